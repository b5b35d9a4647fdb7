"""`uos annotate`: a keyboard-first Textual app over an `AnnotationSession`.

Usable at 80x24 over SSH: a status line, a line of metadata, the plot (torque and thrust against
depth, step starts, the three keypoints, the cursor), a line of keypoints and the key hints.
Every change is saved at once by the session.
"""

from __future__ import annotations

import time

import numpy as np
from plotext._dict import color_codes
from rich.cells import cell_len
from rich.color import Color as RichColor
from rich.markup import escape
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.keys import format_key
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static
from textual_plotext import PlotextPlot

from uos.annotate.session import AnnotationSession
from uos.holes.quality import in_physical_range

FINE, COARSE = 0.005, 0.05  # cursor steps, as shares of the visible width
LETTERS = {"entry": "E", "transition": "T", "exit": "X"}  # as on the keys
SHORT = {"event": "evt", "signal": "sig", "none": "-"}
# Plotext colours. Textual shows them through its terminal theme, where red and magenta are one
# colour: the cursor is blue (a violet there), which no trace or marker uses.
COLOURS = {
    "torque": "cyan",
    "thrust": "magenta",
    "automatic": "orange",
    "yours": "green",
    "stale": "gray+",
    "step": "gray",
    "cursor": "blue",
}
# How a key is written where Textual's name for it is not what is on the keycap.
KEY_NAMES = {"pagedown": "PgDn", "pageup": "PgUp"}
# The line under the plot, most needed first: at 80 columns the tail is left out, never `? help`.
# Its hints are the bindings shown there (show=True), by description; their keys come from the bindings.
KEY_LINE = (
    "help",
    "move",
    "set",
    "absent",
    "accept",
    "accept+next",
    "reject",
    "undo",
    "zoom",
    "hole",
    "keypoint",
    "fast",
)
# Lines of the help shared by several bindings: what their keys do.
FINE_MOVES = Binding.Group("move the cursor (fine)")
COARSE_MOVES = Binding.Group("move the cursor (coarse)")
JUMPS = Binding.Group("jump to the previous / next keypoint")
SETS = Binding.Group("set entry / transition / exit at the cursor")
ABSENT = Binding.Group("mark entry / transition / exit absent")
ACCEPTS = Binding.Group("accept the keypoints shown / accept, then next hole")
REJECTS = Binding.Group("reject the hole (with a reason) / un-reject")
ZOOMS = Binding.Group("zoom in / out around the cursor / whole hole")
HOLES = Binding.Group("next / previous hole")
# The mouse has no binding: its line of the help.
CLICK = ("click", "move the cursor where you click")


def key_name(key: str) -> str:
    """A key as the help and the key line write it: ←, ⇧←, [, PgDn, ctrl+z."""
    if key.startswith("shift+"):
        return "⇧" + key_name(key.removeprefix("shift+"))
    return KEY_NAMES.get(key) or format_key(key)


def _keys(binding: Binding) -> list[str]:
    return [key.strip() for key in binding.key.split(",")]


def help_lines(bindings: list[Binding]) -> list[tuple[str, str]]:
    """(keys, what they do) for each line of the help: one per group of bindings (its description)
    and one per binding with a tooltip; a binding with neither (a second key) is on no line. Each
    binding's first key is written first, its other keys after: `←  →  (or h l)`."""
    lines: dict[Binding | Binding.Group, list[Binding]] = {}
    for binding in bindings:
        if binding.group is not None or binding.tooltip:
            lines.setdefault(binding.group or binding, []).append(binding)
    out = []
    for line, members in lines.items():
        first = [key_name(_keys(b)[0]) for b in members]
        others = [key_name(key) for b in members for key in _keys(b)[1:]]
        keys = "  ".join(first) + (f"  (or {' '.join(others)})" if others else "")
        out.append((keys, line.description if isinstance(line, Binding.Group) else line.tooltip))
    return out


def key_hints(bindings: list[Binding]) -> list[str]:
    """The key line's hints in KEY_LINE's order: the bindings shown there, those of one
    description together (`e/t/x set`), written as their key_display when they have one (`←→`)."""
    keys: dict[str, list[str]] = {}
    for binding in bindings:
        if binding.show:
            shown = keys.setdefault(binding.description, [])
            text = binding.key_display or key_name(_keys(binding)[0])
            if text not in shown:
                shown.append(text)
    return [f"{'/'.join(keys[label])} {label}" for label in sorted(keys, key=KEY_LINE.index)]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: 78; height: auto; border: round $accent; padding: 0 1; background: $surface; }
    """

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(self.text)


class PromptScreen(ModalScreen[str | None]):
    """One line of input: Enter gives it back, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 70; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, placeholder: str = ""):
        super().__init__()
        self.title_text, self.placeholder = title, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text)
            yield Input(placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class HolePlot(PlotextPlot):
    """Torque and thrust against depth over the visible window, with markers."""

    def __init__(self, session: AnnotationSession, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self._drawn = 0  # bumped by draw(): the plot is only rebuilt when it changed
        self._cached: tuple[tuple[int, int, int], object] | None = None
        # Terminal colours, no painted background: half the rendering work of a themed plot, and
        # it looks right in any terminal over SSH.
        self.theme = "clear"

    def render(self):
        """Plotext rebuilds its whole canvas on every render; the screen re-renders the plot when
        other widgets change too, so keep the last build while nothing it shows has changed."""
        key = (self._drawn, self.size.width, self.size.height)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, super().render())
        return self._cached[1]

    class Clicked(Message):
        """The plot was clicked at `depth_mm` (the depth under the mouse)."""

        def __init__(self, depth_mm: float) -> None:
            super().__init__()
            self.depth_mm = depth_mm

    def on_click(self, event: events.Click) -> None:
        left, right = 7, 8  # room taken by the axes' tick labels
        usable = max(self.size.width - left - right, 1)
        lo, hi = self.session.view
        self.post_message(self.Clicked(lo + (event.x - left) / usable * (hi - lo)))

    def draw(self) -> None:
        session, plt = self.session, self.plt
        plt.clear_figure()
        hole = session.hole
        if hole is None:
            plt.title("no holes in this filter: press f to change it")
            self._drawn += 1
            self.refresh()
            return
        lo, hi = session.view
        depth = hole.signals["depth_mm"]
        inside = np.flatnonzero((depth >= lo) & (depth <= hi))
        columns = max(self.size.width - 12, 20)
        bottom = None
        for name, yside in (("torque", "left"), ("thrust", "right")):
            shown = inside[in_physical_range(hole.signals[f"{name}_a"][inside], f"{name}_a")]
            values = hole.signals[f"{name}_a"][shown]
            for i, (x, y) in enumerate(decimate(depth[shown], values, columns)):
                label = None if i else f"{name} A"
                plt.plot(x, y, color=COLOURS[name], marker="braille", label=label, yside=yside)
            limits = _limits(values)
            if limits is not None:  # every visible sample inside the frame, not only those plotted
                plt.ylim(*limits, yside=yside)
                bottom = limits[0] if yside == "left" else bottom
        step = hole.signals.get("step")
        if step is not None and len(step):
            for index in np.flatnonzero(np.diff(step) != 0) + 1:
                if lo <= depth[index] <= hi:
                    plt.vline(float(depth[index]), color=COLOURS["step"])
        for name, point in session.points().items():
            if point.depth_mm is not None and lo <= point.depth_mm <= hi:
                colour = COLOURS["stale" if point.stale else "yours" if point.human else "automatic"]
                plt.vline(point.depth_mm, color=colour)
                if bottom is not None:  # the tag on the bottom row: in the margin, clear of the legend
                    # (background: the terminal's, as the theme applied at render time has it)
                    plt.text(
                        LETTERS[name], point.depth_mm, bottom, color=colour, background="default", alignment="center"
                    )
        plt.vline(session.cursor_mm, color=COLOURS["cursor"])
        plt.xlim(lo, hi)
        plt.xlabel("depth mm")
        self._drawn += 1
        self.refresh()


def decimate(x: np.ndarray, y: np.ndarray, columns: int) -> list[tuple[list[float], list[float]]]:
    """The lines to draw for one signal: itself, or with more samples than twice the columns,
    the lower and upper edges of its band, each column's lowest and highest sample at its own
    depth, with the first and last samples on both. No sample is lost from view: every one lies
    in a column whose extremes are drawn. Plotext's cost grows with points (and with line
    length: a zigzag through each column costs six times as much), so an 11,000-sample hole
    plots as fast as a small one."""
    n = len(x)
    if n <= 2 * columns:
        return [(x.tolist(), y.tolist())]
    edges = np.linspace(0, n, columns + 1).astype(int)  # every sample in one column, none dropped
    bins = np.repeat(np.arange(columns), np.diff(edges))
    lines = []
    for extreme in (np.fmin, np.fmax):  # (NaN-blind: a gap in the signal hides no column)
        value = extreme.reduceat(y, edges[:-1])
        hits = np.flatnonzero(y == value[bins])
        chosen = np.union1d(hits[np.unique(bins[hits], return_index=True)[1]], [0, n - 1])
        lines.append((x[chosen].tolist(), y[chosen].tolist()))
    return lines


def _limits(values: np.ndarray) -> tuple[float, float] | None:
    """Y-limits around every finite value, with a margin (a row for the tags, a flat signal visible)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    low, high = float(finite.min()), float(finite.max())
    margin = max((high - low) * 0.08, 0.05)
    return low - margin, high + margin


class AnnotateApp(App[None]):
    TITLE = "uos annotate"
    CSS = """
    Screen { layout: vertical; }
    #status, #meta, #points, #why, #keys { height: 1; padding: 0 1; }
    #status { background: $primary-background; }
    #keys { color: $text-muted; }
    HolePlot { height: 1fr; min-height: 10; }
    """
    # The keys, once: the help (help_lines) and the key line (key_hints) are made from them.
    BINDINGS = [
        Binding("left,h", "move(-1)", "move", key_display="←→", group=FINE_MOVES),
        Binding("right,l", "move(1)", "move", key_display="←→", group=FINE_MOVES),
        Binding("shift+left,H", "move(-10)", "fast", key_display="⇧←→", group=COARSE_MOVES),
        Binding("shift+right,L", "move(10)", "fast", key_display="⇧←→", group=COARSE_MOVES),
        Binding("left_square_bracket", "jump(-1)", "keypoint", key_display="[ ]", group=JUMPS),
        Binding("right_square_bracket", "jump(1)", "keypoint", key_display="[ ]", group=JUMPS),
        Binding("e", "set('entry')", "set", group=SETS),
        Binding("t", "set('transition')", "set", group=SETS),
        Binding("x", "set('exit')", "set", group=SETS),
        Binding("E", "clear('entry')", "absent", group=ABSENT),
        Binding("T", "clear('transition')", "absent", group=ABSENT),
        Binding("X", "clear('exit')", "absent", group=ABSENT),
        Binding("a", "accept", "accept", group=ACCEPTS),
        Binding("A", "accept_and_next", "accept+next", group=ACCEPTS),
        Binding("r", "reject", "reject", group=REJECTS),
        Binding("R", "unreject", "un-reject", show=False, group=REJECTS),
        Binding("u,ctrl+z", "undo", "undo", tooltip="undo"),
        Binding("U,ctrl+y", "redo", "redo", show=False, tooltip="redo"),
        Binding("plus", "zoom(0.5)", "zoom", group=ZOOMS),
        Binding("minus", "zoom(2.0)", "zoom", group=ZOOMS),
        Binding("0", "reset_zoom", "whole hole", show=False, group=ZOOMS),
        Binding("n,pagedown", "next", "hole", group=HOLES),
        Binding("p,pageup", "previous", "hole", group=HOLES),
        Binding("f", "cycle_filter", "filter", show=False, tooltip="filter: needs review, all, rejected"),
        Binding("slash", "filter_text", "filter by text", show=False, tooltip="filter: head:TEXT or folder:TEXT"),
        Binding("question_mark", "help", "help", tooltip="this help"),
        Binding("q", "quit", "quit", show=False, tooltip="quit (everything is already saved)"),
        # Second keys, on no line of the help: = is + unshifted; j and k as in a pager.
        Binding("equals_sign", "zoom(0.5)", "zoom in", show=False),
        Binding("j", "next", "next hole", show=False),
        Binding("k", "previous", "previous hole", show=False),
    ]

    def __init__(self, session: AnnotationSession):
        super().__init__()
        self.session = session
        self.latencies: list[float] = []  # seconds from a hole change to the screen showing it

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Static(id="meta")
        yield HolePlot(self.session, id="plot")
        yield Static(id="points")
        yield Static(id="why")
        yield Static(id="keys")

    def on_mount(self) -> None:
        self.refresh_view()

    def on_resize(self, _: events.Resize) -> None:
        self.refresh_view()

    def on_hole_plot_clicked(self, message: HolePlot.Clicked) -> None:
        self.session.set_cursor(message.depth_mm)
        self.refresh_view()

    def paint(self, text: str, role: str) -> str:
        """`text` in markup, in the colour that `role` (a key of COLOURS) has on the plot: Textual
        shows plotext's ANSI colours through its terminal theme, and markup's by their names."""
        return f"[{terminal_colour(COLOURS[role], self)}]{escape(text)}[/]"

    def refresh_view(self) -> None:
        s = self.session
        done, total, rate = s.progress()
        where = f"hole {s.position + 1}/{total}" if total else "no hole"
        speed = f"{rate:.1f}/min" if s.annotated else "-/min"
        state = ""
        if s.hole_id is not None:
            state = s.status(s.hole_id)
            note = s.notes.get(s.hole_id)
            if state == "stale":
                state = "[b red]STALE[/]: made on other signals, not used"
            elif state == "rejected" and note is not None:
                state = f"[b]REJECTED[/]: {escape(str(note.rejected))}"
        self.query_one("#status", Static).update(
            f"[b]{s.filter}[/b]  {where}  done {done}/{total}  {speed}  {state}  {escape(s.message)}"
        )
        self._show_hole()
        width = max(self.size.width - 2, 10)
        hints = key_hints(self.BINDINGS)
        keys = hints[0]
        for hint in hints[1:]:
            if cell_len(f"{keys}  {hint}") > width:
                break
            keys = f"{keys}  {hint}"
        self.query_one("#keys", Static).update(escape(keys))
        self.query_one(HolePlot).draw()

    def _show_hole(self) -> None:
        """The metadata, keypoints and why-line of the current hole."""
        s, hole = self.session, self.session.hole
        if hole is None:
            for name in ("#meta", "#points", "#why"):
                self.query_one(name, Static).update("")
            return
        m = hole.meta
        source = str(m.get("source") or "").rsplit("/", 1)[-1]
        review = s.review_reasons(s.hole_id)
        if review is not None:  # why the model is unsure matters more than the metadata
            self.query_one("#meta", Static).update(f"{s.hole_id}  [red]model unsure:[/red] {escape(review)}")
        else:
            meta = (
                f"{s.hole_id}  {source}  head {m.get('head_name')}  tool age {m.get('tool_age')}  "
                f"Pset {m.get('pset')}  format {m.get('format_version')}"
            )
            self.query_one("#meta", Static).update(escape(meta))
        parts = []
        points = s.points()
        for name, point in points.items():
            where_mm = "absent" if point.depth_mm is None else f"{point.depth_mm:.2f}"
            if point.stale:
                who = self.paint("stale", "stale")
            elif point.human:
                who = self.paint("yours", "yours")
            else:
                who = f"[yellow]{SHORT.get(point.source, point.source)} {point.confidence:.2f}[/yellow]"
            parts.append(f"[b]{LETTERS[name]}[/b] {where_mm} {who}")
        depth = hole.signals["depth_mm"]
        i = int(np.nanargmin(np.abs(depth - s.cursor_mm)))
        readout = f"{self.paint('cursor', 'cursor')} {s.cursor_mm:.2f} mm {hole.signals['torque_a'][i]:.2f} A"
        self.query_one("#points", Static).update(" | ".join([*parts, readout]))
        self.query_one("#why", Static).update(self._why(points))

    def _why(self, points) -> str:
        """A refused change and its reason; else the reason of the keypoint nearest the cursor."""
        s = self.session
        if s.refused:
            return f"[b red]{escape(s.refused)}[/]"
        present = {k: p for k, p in points.items() if p.depth_mm is not None}
        if not present:
            return escape("; ".join(f"{LETTERS[k]}: {p.reason}" for k, p in points.items() if p.reason))
        name = min(present, key=lambda k: abs(present[k].depth_mm - s.cursor_mm))
        return f"[b]{LETTERS[name]}[/b] {escape(present[name].reason or 'no reason recorded')}"

    # --- actions: each calls the session, then redraws ----------------------------------------

    def action_move(self, steps: int) -> None:
        self.session.move(steps * FINE)
        self.refresh_view()

    def action_jump(self, direction: int) -> None:
        self.session.jump(direction)
        self.refresh_view()

    def action_set(self, name: str) -> None:
        self.session.set_point(name)
        self.refresh_view()

    def action_clear(self, name: str) -> None:
        self.session.clear_point(name)
        self.refresh_view()

    def action_accept(self) -> None:
        self.session.accept()
        self.refresh_view()

    def action_accept_and_next(self) -> None:
        self._timed(self.session.accept_and_next)

    def action_reject(self) -> None:
        def done(reason: str | None) -> None:
            if reason is not None:
                self.session.reject(reason)
            self.refresh_view()

        prompt = PromptScreen(
            "Reject this hole: why? (Enter to reject, Esc to cancel)",
            "e.g. converter re-export, broken tool, not a stack",
        )
        self.push_screen(prompt, done)

    def action_unreject(self) -> None:
        self.session.unreject()
        self.refresh_view()

    def action_undo(self) -> None:
        self.session.undo()
        self.refresh_view()

    def action_redo(self) -> None:
        self.session.redo()
        self.refresh_view()

    def action_zoom(self, factor: float) -> None:
        self.session.zoom(factor)
        self.refresh_view()

    def action_reset_zoom(self) -> None:
        self.session.reset_zoom()
        self.refresh_view()

    def action_next(self) -> None:
        self._timed(self.session.next)

    def action_previous(self) -> None:
        self._timed(self.session.previous)

    def _timed(self, change) -> None:
        """Change hole and record how long until the screen shows the new one."""
        started = time.perf_counter()
        change()
        self.refresh_view()
        self.call_after_refresh(lambda: self.latencies.append(time.perf_counter() - started))

    def action_cycle_filter(self) -> None:
        self.session.cycle_filter()
        self.refresh_view()

    def action_filter_text(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self.session.set_filter(text if text.startswith(("head:", "folder:")) else f"folder:{text}")
            self.refresh_view()

        self.push_screen(
            PromptScreen("Filter: head:TEXT or folder:TEXT (plain text matches the folder)", "head:114"), done
        )

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_text()))

    def help_text(self) -> str:
        """The help screen's text: the colours of the plot, then a line per key (help_lines)."""
        lines = help_lines(self.BINDINGS)
        lines.insert(len(lines) - 2, CLICK)  # (before the app's own keys, ? and q)
        width = max(len(keys) for keys, _ in lines) + 2
        paint = self.paint
        text = [
            "[b]Keys[/b]  (every change is saved at once; Esc closes)",
            "",
            f"Plot: {paint('automatic', 'automatic')} keypoints, {paint('yours', 'yours')}, "
            f"{paint('stale', 'stale')} (other signals), {paint('cursor', 'cursor')}, {paint('steps', 'step')};",
            "E T X tag them. A hole is done when all three are decided, or rejected.",
            "",
        ]
        return "\n".join(text + [f"[b]{escape(keys.ljust(width))}[/b]{escape(what)}" for keys, what in lines])


def terminal_colour(name: str, app: App) -> str:
    """The colour (#rrggbb) a plotext colour name shows as in `app`."""
    return RichColor.from_ansi(color_codes[name]).get_truecolor(app.ansi_theme).hex


def make_app(session: AnnotationSession) -> AnnotateApp:
    """The app the command runs and the tests drive."""
    return AnnotateApp(session)
