"""Progress bars (rich, on stderr): training's step, loss, tokens/s and ETA; counted work."""

from __future__ import annotations


class TrainProgress:
    """rich progress bar for the training loop; a no-op on non-main processes."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self.total, self.start, self.enabled = total, start, enabled
        self._progress = None

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self.start, loss="-", tps="-"
            )
        return self

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        """Move the bar to `step` and show the latest loss and throughput."""
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step, loss=f"{loss:.4f}", tps=f"{tokens_per_s:,.0f}"
            )

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


class Counting:
    """A transient bar that counts finished items (eval answers, regularization answers)."""

    def __init__(self, description: str, total: int):
        self.description, self.total = description, total

    def __enter__(self) -> Counting:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self._progress = Progress(*columns, console=Console(stderr=True), transient=True)
        self._progress.__enter__()
        self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int) -> None:
        """Count `n` more finished items."""
        self._progress.advance(self._task, n)

    def describe(self, description: str) -> None:
        """Change the label in front of the bar."""
        self._progress.update(self._task, description=description)

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)
