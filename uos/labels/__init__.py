"""Where a hole gets its keypoints: machine events, signal analysis and human annotations."""

KEYPOINTS = ("entry", "transition", "exit")  # in depth order: where the drill enters, changes layer, breaks through
