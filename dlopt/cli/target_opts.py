"""Which model a command works on: the shared target options and the one function that turns them into a
`dlopt.contract.target.TargetOptions`. Every command with a target takes `TargetArgs` (one option group, see
dlopt.cli.groups), so --checkpoint, --run, --weights, --trust-pickle, --set, --max-length, --tiny... mean and read
the same everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dlopt.cli.groups import BUILD, OUTPUT, TARGET
from dlopt.core.errors import ConfigError
from dlopt.core.layout import DEFAULT_ROOT

if TYPE_CHECKING:
    from dlopt.contract.target import TargetOptions


def _name_trust(value: str | None) -> str | None:
    """A user model NAME on the command line is the user's own choice: records naming the same code may run it."""
    from dlopt.core.user_code import is_user_ref, set_cli

    set_cli(name=value if value and is_user_ref(value) else None)
    return value


def _model_code_trust(values: list[str] | None) -> list[str] | None:
    from dlopt.core.user_code import is_user_ref, set_cli

    bad = [v for v in values or [] if not is_user_ref(v)]
    if bad:
        raise typer.BadParameter(f"{bad[0]!r} is not a model reference; give path/to/file.py:fn or package.module:fn")
    set_cli(refs=tuple(values or ()))
    return values


def _trust_code(value: bool) -> bool:
    from dlopt.core.user_code import set_cli

    set_cli(everything=bool(value))
    return value


ArchArg = Annotated[str, typer.Argument(help="Architecture name (see `dlopt list`), torchvision:NAME, or file.py:fn.",
                                        show_default=False, callback=_name_trust)]
NameArg = Annotated[str | None, typer.Argument(help="Architecture name, checkpoint (.json) or run directory; "
                                                    "nothing = the latest run's model.", show_default=False,
                                              callback=_name_trust)]
CheckpointOpt = Annotated[Path | None, typer.Option("--checkpoint", rich_help_panel=TARGET,
                                                    help="Checkpoint record (.json) to start from.")]
RunOpt = Annotated[Path | None, typer.Option("--run", rich_help_panel=TARGET,
                                             help="Run directory to work on (default: the latest run).")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", metavar="DEFAULT|NAME|PATH", show_default=False, rich_help_panel=TARGET,
    help="Weights for a model built by name: torchvision weights (DEFAULT, IMAGENET1K_V1) from the local torch hub "
         "cache, or a state dict file (.safetensors, or .pth/.pt read with torch.load(weights_only=True)).")]
TrustCodeOpt = Annotated[bool, typer.Option(
    "--trust-code", callback=_trust_code, rich_help_panel=TARGET,
    help="Run whatever user model code a checkpoint record or run names. Only for files you trust.")]
ModelCodeOpt = Annotated[list[str] | None, typer.Option(
    "--model-code", metavar="FILE.py:FN", callback=_model_code_trust, rich_help_panel=TARGET,
    help="User model code a checkpoint record or run may run (repeatable); records naming other code are refused.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", rich_help_panel=BUILD,
                                                  help="Build option (repeatable), e.g. num_classes=5.")]
InputSizeOpt = Annotated[int | None, typer.Option(
    "--input-size", min=1, rich_help_panel=BUILD,
    help="The input_size build option: image side for image models, features per step for RNNs.")]
InputShapeOpt = Annotated[str | None, typer.Option(
    "--input-shape", metavar="DIMS|NAME:DTYPE:DIMS", rich_help_panel=BUILD,
    help="A user model's inputs (file.py:fn), without the batch: 3,32,32 (one float32 input), or "
         "NAME:DTYPE:DIMS[:LOW-HIGH] each, e.g. ids:int64:16,mask:bool:16 (docs/data.md).")]
MaxLengthOpt = Annotated[int | None, typer.Option(
    "--max-length", min=1, show_default=False, rich_help_panel=BUILD,
    help="A text model's example length in tokens (its seq_len build option; a Hugging Face folder's default: its "
         "position table, at most 128); within the model's positions. bench --seq-len picks the lengths timed.")]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", rich_help_panel=TARGET,
    help="Load pickle-based files no dlopt run records: a model folder's pytorch_model.bin weights (read with "
         "torch.load(weights_only=True)), .ts and .pt2 files. Only for files you trust.")]
TinyOpt = Annotated[bool, typer.Option("--tiny", rich_help_panel=BUILD, help="Use the spec's tiny test configuration.")]
OutOpt = Annotated[Path, typer.Option("--out", rich_help_panel=OUTPUT, help="Output root for runs.")]


def parse_shape(text: str | None) -> tuple[int, ...] | str | None:
    """'3,32,32' -> (3, 32, 32), one float32 input; 'ids:int64:16,mask:bool:16' (NAME:DTYPE:DIMS[:LOW-HIGH], any
    ':') -> that signature's canonical text, which picks a user model's spec (dlopt.models.zoo.external.parse_signature)."""
    if text is None:
        return None
    if ":" in text:
        from dlopt.models.zoo.external import parse_signature, signature_text

        return signature_text(parse_signature(text))
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--input-shape {text!r} is not a list of integers; use e.g. 3,32,32, or NAME:DTYPE:DIMS "
                          "per input (e.g. ids:int64:16,mask:bool:16)") from None
    if not dims or min(dims) < 1:
        raise ConfigError(f"--input-shape {text!r} needs positive sizes, e.g. 3,32,32")
    return dims


@dataclass(frozen=True)
class TargetArgs:
    """The options of every command with a target, beside its NAME argument (whose help says what it may be)."""

    checkpoint: CheckpointOpt = None
    run: RunOpt = None
    weights: WeightsOpt = None
    trust_pickle: TrustPickleOpt = False
    trust_code: TrustCodeOpt = False  # read by its callback (dlopt.core.user_code), like --model-code
    model_code: ModelCodeOpt = None
    sets: SetOpt = None
    input_size: InputSizeOpt = None
    input_shape: InputShapeOpt = None
    max_length: MaxLengthOpt = None
    tiny: TinyOpt = False
    out: OutOpt = DEFAULT_ROOT

    def options(self, name: str | None, **extra: Any) -> TargetOptions:
        """The TargetOptions these options and NAME ask for; `extra`: a command's own fields (seed, variant...)."""
        from dlopt.contract.target import TargetOptions
        from dlopt.models.options import parse_sets

        return TargetOptions(name=name, checkpoint=self.checkpoint, run=self.run, root=self.out,
                             sets=parse_sets(self.sets) or None, input_size=self.input_size,
                             input_shape=parse_shape(self.input_shape), tiny=self.tiny, weights=self.weights,
                             trust_pickle=self.trust_pickle, max_length=self.max_length, **extra)
