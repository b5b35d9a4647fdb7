"""Where a Setitec file or an MQTT capture becomes a hole record.

`read_source(path)` reads any supported input (Setitec text file, binary Excel re-save, MQTT
capture folder) into a `Hole`; `quality.check_hole` grades it.
"""

from uos.holes.read import read_source
from uos.holes.record import Hole, Issue

__all__ = ["Hole", "Issue", "read_source"]
