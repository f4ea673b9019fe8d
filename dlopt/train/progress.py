"""A Rich progress bar over all optimizer steps, showing the running loss and the last validation metric."""

from __future__ import annotations

from typing import Any


class TrainProgress:
    def __init__(self, title: str, metric: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.metric, self.loss, self.value, self.epoch = metric, float("nan"), None, 0
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=False)
        self.title, self.finished = title, False
        self.task: Any = None

    def start(self, total: int, completed: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(self.title, total=total, completed=completed, status="")

    def _status(self) -> str:
        metric = "" if self.value is None else f" val {self.metric} {self.value:.4g}"
        # During an epoch: the one running; after it: the one just finished (the last shows "epoch N done").
        where = f"epoch {self.epoch} done" if self.finished else f"epoch {self.epoch + 1}"
        return f"{where} loss {self.loss:.4g}{metric}"

    def step(self, stats: dict[str, float]) -> None:
        loss = stats.get("loss", self.loss)
        self.loss = loss if self.loss != self.loss else 0.9 * self.loss + 0.1 * loss  # smoothed
        self.finished = False
        self.bar.update(self.task, advance=1, status=self._status())

    def epoch_done(self, epoch: int, value: float | None) -> None:
        self.epoch, self.value, self.finished = epoch, value, True
        self.bar.update(self.task, status=self._status())

    def note(self, text: str) -> None:
        self.bar.console.print(f"[yellow]note:[/yellow] {text}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.bar.stop()
