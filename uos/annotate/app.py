"""`uos annotate`: a keyboard-first Textual app over an `AnnotationSession`.

Usable at 80x24 over SSH: a status line, a line of metadata, the plot (torque and thrust against
depth, step starts, the three keypoints, the cursor), a line of keypoints and the key hints.
Every change is saved at once by the session.
"""

from __future__ import annotations

import time

import numpy as np
from rich.markup import escape
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static
from textual_plotext import PlotextPlot

from uos.annotate.session import AnnotationSession

FINE, COARSE = 0.005, 0.05  # cursor steps, as shares of the visible width
LETTERS = {"entry": "E", "transition": "T", "exit": "X"}  # as on the keys
SHORT = {"event": "evt", "signal": "sig", "none": "-"}

KEYS = [
    ("← →  or  h l", "move the cursor (fine)"),
    ("⇧← ⇧→  or  H L", "move the cursor (coarse)"),
    ("[  ]", "jump to the previous / next keypoint"),
    ("e  t  x", "set entry / transition / exit at the cursor"),
    ("E  T  X", "mark entry / transition / exit absent"),
    ("a", "accept the automatic labels as they are"),
    ("r  R", "reject the hole (with a reason) / un-reject"),
    ("u  ctrl+z", "undo"),
    ("U  ctrl+y", "redo"),
    ("+  -  0", "zoom in / out around the cursor / whole hole"),
    ("n  p  (or PgDn PgUp)", "next / previous hole"),
    ("f", "filter: needs review, all, rejected"),
    ("/", "filter: head:TEXT or folder:TEXT"),
    ("click", "move the cursor where you click"),
    ("?", "this help"),
    ("q", "quit (everything is already saved)"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: 78; height: auto; border: round $accent; padding: 0 1; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        width = max(len(k) for k, _ in KEYS) + 2
        lines = ["[b]Keys[/b]  (every change is saved at once; Esc closes)", "",
                 "On the plot: [orange1]orange[/orange1] automatic keypoints, [green]green[/green] yours, "
                 "[red]red[/red] the cursor, gray step starts.", ""]  # fmt: skip
        lines += [f"[b]{key.ljust(width)}[/b]{what}" for key, what in KEYS]
        yield Static("\n".join(lines))


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

    def on_click(self, event: events.Click) -> None:
        left, right = 7, 8  # room taken by the axes' tick labels
        usable = max(self.size.width - left - right, 1)
        lo, hi = self.session.view
        self.session.set_cursor(lo + (event.x - left) / usable * (hi - lo))
        self.app.refresh_view()  # type: ignore[attr-defined]

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
        x, low, high, thrust = _bands(depth[inside], hole.signals["torque_a"][inside], hole.signals["thrust_a"][inside],
                                      max(self.size.width - 12, 20))  # fmt: skip
        plt.plot(x, high, color="cyan", marker="braille", label="torque A")
        if low is not high:  # many samples per column: the torque as a band (min to max)
            plt.plot(x, low, color="cyan", marker="braille")
        plt.plot(x, thrust, color="magenta", marker="braille", label="thrust A", yside="right")
        step = hole.signals.get("step")
        if step is not None and len(step):
            for index in np.flatnonzero(np.diff(step) != 0) + 1:
                if lo <= depth[index] <= hi:
                    plt.vline(float(depth[index]), color="gray")
        for point in session.points().values():
            if point.depth_mm is not None and lo <= point.depth_mm <= hi:
                plt.vline(point.depth_mm, color="green" if point.human else "orange")
        plt.vline(session.cursor_mm, color="red")
        plt.xlim(lo, hi)
        plt.xlabel("depth mm")
        self._drawn += 1
        self.refresh()


def _bands(depth: np.ndarray, torque: np.ndarray, thrust: np.ndarray, columns: int):
    """At most one point per plot column: with more samples than columns, the torque's min and
    max per column (a band that keeps oscillation and spikes visible) and the thrust's mean.
    Plotext's cost grows with points, so an 11,000-sample hole plots as fast as a small one."""
    if len(depth) <= 2 * columns:
        x, t = depth.tolist(), torque.tolist()
        return x, t, t, thrust.tolist()
    size = len(depth) // columns
    n = size * columns
    shape = (columns, size)
    x = depth[:n].reshape(shape).mean(axis=1)
    blocks = torque[:n].reshape(shape)
    return (
        x.tolist(),
        blocks.min(axis=1).tolist(),
        blocks.max(axis=1).tolist(),
        thrust[:n].reshape(shape).mean(axis=1).tolist(),
    )


class AnnotateApp(App[None]):
    TITLE = "uos annotate"
    CSS = """
    Screen { layout: vertical; }
    #status, #meta, #points, #keys { height: 1; padding: 0 1; }
    #status { background: $primary-background; }
    #keys { color: $text-muted; }
    HolePlot { height: 1fr; min-height: 10; }
    """
    BINDINGS = [
        Binding("left,h", "move(-1)", "left", show=False),
        Binding("right,l", "move(1)", "right", show=False),
        Binding("shift+left,H", "move(-10)", "fast left", show=False),
        Binding("shift+right,L", "move(10)", "fast right", show=False),
        Binding("left_square_bracket", "jump(-1)", "previous keypoint", show=False),
        Binding("right_square_bracket", "jump(1)", "next keypoint", show=False),
        Binding("e", "set('entry')", "entry", show=False),
        Binding("t", "set('transition')", "transition", show=False),
        Binding("x", "set('exit')", "exit", show=False),
        Binding("E", "clear('entry')", "no entry", show=False),
        Binding("T", "clear('transition')", "no transition", show=False),
        Binding("X", "clear('exit')", "no exit", show=False),
        Binding("a", "accept", "accept", show=False),
        Binding("r", "reject", "reject", show=False),
        Binding("R", "unreject", "unreject", show=False),
        Binding("u,ctrl+z", "undo", "undo", show=False),
        Binding("U,ctrl+y", "redo", "redo", show=False),
        Binding("plus,equals_sign", "zoom(0.5)", "zoom in", show=False),
        Binding("minus", "zoom(2.0)", "zoom out", show=False),
        Binding("0", "reset_zoom", "whole hole", show=False),
        Binding("n,pagedown,j", "next", "next hole", show=False),
        Binding("p,pageup,k", "previous", "previous hole", show=False),
        Binding("f", "cycle_filter", "filter", show=False),
        Binding("slash", "filter_text", "filter by text", show=False),
        Binding("question_mark", "help", "help", show=False),
        Binding("q", "quit", "quit", show=False),
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
        yield Static(
            "←→ move  ⇧←→ fast  [ ] keypoint  e/t/x set  E/T/X absent  a accept  r reject  u undo  +/- zoom  n/p hole  ? help",
            id="keys",
        )

    def on_mount(self) -> None:
        self.refresh_view()

    def on_resize(self, _: events.Resize) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        s = self.session
        done, total, rate = s.progress()
        note = s.notes.get(s.hole_id) if s.hole_id else None
        flag = "  REJECTED: " + note.rejected if note is not None and note.rejected else ""
        where = f"hole {s.position + 1}/{total}" if total else "no hole"
        speed = f"{rate:.1f}/min" if s.annotated else "-/min"
        self.query_one("#status", Static).update(
            f"[b]{s.filter}[/b]  {where}  done {done}/{total}  {speed}  {s.message}{flag}"
        )
        hole = s.hole
        if hole is not None:
            m = hole.meta
            source = str(m.get("source") or "").rsplit("/", 1)[-1]
            review = s.review_reasons(s.hole_id)
            if review is not None:  # why the model is unsure matters more than the metadata
                self.query_one("#meta", Static).update(f"{s.hole_id}  [red]model unsure:[/red] {escape(review)}")
            else:
                self.query_one("#meta", Static).update(
                    f"{s.hole_id}  {source}  head {m.get('head_name')}  tool age {m.get('tool_age')}  "
                    f"Pset {m.get('pset')}  format {m.get('format_version')}"
                )
            parts = []
            for name, point in s.points().items():
                where_mm = "absent" if point.depth_mm is None else f"{point.depth_mm:.2f}"
                short = SHORT.get(point.source, point.source)
                who = "[green]yours[/green]" if point.human else f"[yellow]{short} {point.confidence:.2f}[/yellow]"
                parts.append(f"[b]{LETTERS[name]}[/b] {where_mm} {who}")
            depth = hole.signals["depth_mm"]
            i = int(np.argmin(np.abs(depth - s.cursor_mm)))
            readout = f"[red]cursor[/red] {s.cursor_mm:.2f} mm {hole.signals['torque_a'][i]:.2f} A"
            self.query_one("#points", Static).update(" | ".join([*parts, readout]))
        else:
            self.query_one("#meta", Static).update("")
            self.query_one("#points", Static).update("")
        self.query_one(HolePlot).draw()

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

    def action_reject(self) -> None:
        def done(reason: str | None) -> None:
            if reason is not None:
                self.session.reject(reason)
            self.refresh_view()

        self.push_screen(PromptScreen("Reject this hole: why? (Enter to reject, Esc to cancel)",
                                      "e.g. converter re-export, broken tool, not a stack"), done)  # fmt: skip

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
        self.push_screen(HelpScreen())


def make_app(session: AnnotationSession) -> AnnotateApp:
    """The app the command runs and the tests drive."""
    return AnnotateApp(session)
