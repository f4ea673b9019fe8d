"""Hugging Face model folders as architectures: `dlopt export ./my-model` (or `hf:./my-model`).

A folder with config.json (and no manifest.json, which would make it a dlopt run) is built with transformers' Auto
class for the head its config names (`architectures`: ...ForSequenceClassification, ...ForImageClassification,
...ForCausalLM / LMHeadModel, ...ForMaskedLM, ...ForTokenClassification; an encoder-decoder model such as Whisper
or T5 is deployed as its encoder alone), from the folder only (`local_files_only=True`, never
`trust_remote_code`), from safetensors only unless the user trusts pickled `.bin` weights (--trust-pickle).

The deployed module takes positional tensors in the spec's order and returns `{output: tensor}` (the logits, or an
encoder's last_hidden_state). Example inputs come from the config: `input_ids` within the vocabulary and an
`attention_mask` of ones at the model's maximum length capped at SEQ_CAP (`--max-length N`), `pixel_values` at
`image_size`, Whisper's `input_features` (num_mel_bins x 2*max_source_positions); `--input-shape` overrides them.
The build options record the folder's sha256s (config.json, weights): a run rebuilds from the same folder and is
refused when it changed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dlopt.core.errors import ConfigError, InputFileError, UnsupportedError
from dlopt.models.hf_build import builder, hf_config, require_transformers
from dlopt.models.hf_folder import Folder, labels_of, read_folder, refuse_pickled
from dlopt.models.spec import BATCH, SEQ, ArchSpec, PruneMethod, Stage, Task, TensorSpec

PREFIX = "hf:"
SEQ_CAP = 128  # default example length: the model's maximum, at most this (a 512-position BERT verifies at 128)


@dataclass(frozen=True)
class Head:
    suffix: str  # how the architecture's class name ends
    autos: tuple[str, ...]  # transformers Auto classes that may map the config to it
    task: Task
    output: str  # the ModelOutput field deployed
    layout: tuple[str, ...]  # the output's axes after the batch: "seq" or config fields


HEADS = (
    Head("ForSequenceClassification", ("AutoModelForSequenceClassification",), Task.CLASSIFICATION, "logits",
         ("num_labels",)),
    Head("ForImageClassification", ("AutoModelForImageClassification",), Task.CLASSIFICATION, "logits",
         ("num_labels",)),
    Head("ForTokenClassification", ("AutoModelForTokenClassification",), Task.CUSTOM, "logits", (SEQ, "num_labels")),
    Head("ForCausalLM", ("AutoModelForCausalLM",), Task.CUSTOM, "logits", (SEQ, "vocab_size")),
    Head("LMHeadModel", ("AutoModelForCausalLM",), Task.CUSTOM, "logits", (SEQ, "vocab_size")),
    Head("ForMaskedLM", ("AutoModelForMaskedLM",), Task.CUSTOM, "logits", (SEQ, "vocab_size")),
    Head("ForConditionalGeneration", ("AutoModelForSpeechSeq2Seq", "AutoModelForSeq2SeqLM"), Task.CUSTOM,
         "last_hidden_state", ()),  # encoder-decoder: the encoder alone
    Head("EncoderModel", ("AutoModelForTextEncoding",), Task.CUSTOM, "last_hidden_state", ()),
    Head("Model", ("AutoModel",), Task.CUSTOM, "last_hidden_state", ()),
)
CAUSAL_KWARGS = {"use_cache": False}  # no key/value cache in the graph: the logits alone
CAUSAL = ("ForCausalLM", "LMHeadModel")


def _resolve(folder: Folder, config: Any) -> tuple[Head, Any, Any]:
    """(head, Auto class, model class) for config.json's architecture; UnsupportedError naming what is known."""
    transformers = require_transformers()
    arch = folder.architecture
    if not isinstance(getattr(transformers, arch, None), type):
        raise UnsupportedError(f"transformers {transformers.__version__} has no architecture {arch!r} (named by "
                               f"{folder.path / 'config.json'}); dlopt builds transformers' own classes only")
    for head in (h for h in HEADS if arch.endswith(h.suffix)):
        for auto_name in head.autos:
            auto = getattr(transformers, auto_name)
            try:
                cls = auto._model_mapping[type(config)]
            except (KeyError, ValueError):
                continue
            if getattr(cls, "__name__", "") == arch:
                return head, auto, cls
    heads = ", ".join(h.suffix for h in HEADS)
    raise UnsupportedError(f"dlopt cannot deploy {arch}: its head is not one of {heads} (or no transformers Auto "
                           "class builds it); save the model with one of those heads")


def _max_len(config: Any) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _image_size(config: Any) -> int:
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)) and len(set(size)) == 1:
        size = size[0]
    return size if isinstance(size, int) and size > 0 else 0


def _defaults(folder: Folder, config: Any) -> dict[str, Any]:
    max_len = _max_len(config)
    labels = labels_of(folder.config)
    return {"seq_len": min(max_len, SEQ_CAP) if max_len else SEQ_CAP, "max_len": max_len,
            "vocab_size": int(getattr(config, "vocab_size", 0) or 0), "num_labels": int(getattr(config, "num_labels", 0)),
            "hidden_size": int(getattr(config, "hidden_size", 0) or 0), "image_size": _image_size(config),
            "num_channels": int(getattr(config, "num_channels", 3) or 3),
            "mel_bins": int(getattr(config, "num_mel_bins", 0) or 0),
            "frames": 2 * int(getattr(config, "max_source_positions", 0) or 0),
            "labels": ", ".join(labels) if len(labels) <= 64 else f"{len(labels)} labels",
            "config_sha256": folder.config_sha256, "weights_sha256": folder.weights_sha256}


@dataclass(frozen=True)
class HFConfigBase:
    """Build options shared by every folder's config class (its defaults come from the folder; see _config_class)."""

    folder: ClassVar[str] = ""
    needs_inputs: ClassVar[bool] = False  # the config does not tell the inputs: --input-shape must
    main_input: ClassVar[str] = ""  # input_ids for a text model: the only kind whose length seq_len sets

    def validate(self) -> str | None:
        current = read_folder(Path(self.folder))
        for key, now in (("config_sha256", current.config_sha256), ("weights_sha256", current.weights_sha256)):
            if getattr(self, key) != now:
                what = "config.json" if key == "config_sha256" else "its weights"
                raise InputFileError(f"the model folder {self.folder} changed since the run recorded it ({what}: "
                                     f"sha256 {now[:12]}..., recorded {getattr(self, key)[:12]}...); restore it, or "
                                     f"start a new run from the folder (dlopt export {self.folder})")
        if self.needs_inputs and not self.inputs:
            return ("dlopt cannot tell this model's inputs from its config; give --input-shape NAME:DTYPE:DIMS per "
                    "forward argument (e.g. input_values:float32:16000)")
        if self.input_shape and self.inputs:
            return "give --input-shape either as dims or as NAME:DTYPE:DIMS inputs, not both"
        if self.max_len and self.seq_len > self.max_len:
            return (f"--max-length (seq_len) {self.seq_len} is longer than the model's {self.max_len} positions; "
                    f"give {self.max_len} or less")
        if self.main_input != "input_ids" and self.seq_len != type(self).__dataclass_fields__["seq_len"].default:
            return (f"--max-length (seq_len) sets a text model's length; this model takes "
                    f"{self.main_input or 'the inputs --input-shape names'}, whose size comes from its config")
        return None


def _config_class(folder: Folder, config: Any, inputs: tuple[TensorSpec, ...]) -> type:
    types = {"seq_len": int, "max_len": int, "vocab_size": int, "num_labels": int, "hidden_size": int,
                "image_size": int, "num_channels": int, "mel_bins": int, "frames": int, "labels": str,
                "config_sha256": str, "weights_sha256": str}
    values = _defaults(folder, config)
    fields: list[Any] = [(k, t, dataclasses.field(default=values[k])) for k, t in types.items()]
    fields += [("input_shape", tuple[int, ...], dataclasses.field(default=())),  # --input-shape dims
               ("inputs", str, dataclasses.field(default="")),  # --input-shape NAME:DTYPE:DIMS,...
               ("pickle_weights", bool, dataclasses.field(default=False))]  # .bin weights trusted (--trust-pickle)
    cls = dataclasses.make_dataclass("HFConfig", fields, bases=(HFConfigBase,), frozen=True)
    cls.folder, cls.needs_inputs, cls.main_input = str(folder.path), not inputs, inputs[0].name if inputs else ""
    return cls


def _inputs(cls: Any, cfg_values: dict[str, Any]) -> tuple[TensorSpec, ...]:
    main = getattr(cls, "main_input_name", "input_ids")
    if main == "input_ids" and cfg_values["vocab_size"]:
        takes_mask = "attention_mask" in inspect.signature(cls.forward).parameters
        ids = TensorSpec("input_ids", (BATCH, SEQ), "int64", 0, "vocab_size")
        return (ids, TensorSpec("attention_mask", (BATCH, SEQ), "int64", 1, 2)) if takes_mask else (ids,)
    if main == "pixel_values" and cfg_values["image_size"]:
        return (TensorSpec("pixel_values", (BATCH, "num_channels", "image_size", "image_size")),)
    if main == "input_features" and cfg_values["mel_bins"] and cfg_values["frames"]:
        return (TensorSpec("input_features", (BATCH, "mel_bins", "frames")),)
    return ()  # unknown from the config: --input-shape names them


def _outputs(head: Head, inputs: tuple[TensorSpec, ...], encoder: bool) -> tuple[TensorSpec, ...]:
    text = bool(inputs) and inputs[0].name == "input_ids"
    if encoder or head.output == "last_hidden_state":
        return (TensorSpec("last_hidden_state", (BATCH, SEQ, "hidden_size") if text else (BATCH,)),)
    layout = tuple(d for d in head.layout if d != SEQ or text)
    return (TensorSpec(head.output, (BATCH, *layout)),)


def folder_ref(name: str) -> Path:
    """The folder an `hf:` name (or a bare path) names."""
    return Path(name.removeprefix(PREFIX)).expanduser()


def hf_spec(name: str, trust_pickle: bool | None = None) -> ArchSpec:
    """The spec of the folder `name` names (`hf:` optional); trust_pickle False refuses pickled-only weights now."""
    folder = read_folder(folder_ref(name))
    if trust_pickle is not None:
        refuse_pickled(folder, trust_pickle)
    return _spec(folder.path, folder.config_sha256, folder.weights_sha256)


@functools.lru_cache(maxsize=32)
def _spec(path: Path, config_sha256: str, weights_sha256: str) -> ArchSpec:
    folder = read_folder(path)
    config = hf_config(folder)
    head, auto, cls = _resolve(folder, config)
    encoder = bool(getattr(config, "is_encoder_decoder", False))
    values = _defaults(folder, config)
    inputs = _inputs(cls, values)
    cfg_cls = _config_class(folder, config, inputs)
    labels = values["labels"]
    what = f"{folder.architecture}{' encoder' if encoder else ''} from {folder.path}"
    return ArchSpec(
        name=f"{PREFIX}{folder.path}", summary=f"Hugging Face {what}" + (f"; labels: {labels}" if labels else ""),
        builder=builder(str(folder.path), auto, head.output, tuple(t.name for t in inputs), encoder,
                        CAUSAL_KWARGS if head.suffix in CAUSAL else {}), config=cfg_cls,
        inputs=inputs, outputs=_outputs(head, inputs, encoder), task=head.task, dataset="none", metric="none",
        kind="hf", stages=frozenset(Stage) - {Stage.TRAIN}, prune_methods=frozenset({PruneMethod.UNSTRUCTURED}),
        limits={"train": "dlopt does not train Hugging Face models: fine-tune with transformers, save_pretrained, "
                         "then point dlopt at the folder",
                "prune:structured": "structured pruning of a transformers model needs its attention heads and "
                                    "config rewritten, which Torch-Pruning does not do here; use --method "
                                    "unstructured"},
        extra="hf",
    )


def with_inputs(spec: ArchSpec, cfg: Any) -> ArchSpec:
    """The spec whose inputs --input-shape gave: NAME:DTYPE:DIMS,... as written (the names are the model's forward
    arguments), or dims: (L,) fixes a text model's length, (C, H, W) an image model's input."""
    if not getattr(cfg, "inputs", "") and not getattr(cfg, "input_shape", ()):
        return spec
    return _overridden(spec, cfg.inputs, tuple(cfg.input_shape))


def _overridden(spec: ArchSpec, signature: str, dims: tuple[int, ...]) -> ArchSpec:
    if signature:
        from dlopt.models.zoo.external import parse_signature

        inputs = parse_signature(signature)
        return dataclasses.replace(spec, inputs=inputs, outputs=(TensorSpec(spec.outputs[0].name, (BATCH,)),))
    first = spec.inputs[0] if spec.inputs else None
    if first is not None and SEQ in first.shape and len(dims) == 1:
        fix = lambda t: TensorSpec(t.name, tuple(dims[0] if d == SEQ else d for d in t.shape), t.dtype,
                                   t.low, t.high)
        return dataclasses.replace(spec, inputs=tuple(map(fix, spec.inputs)), outputs=tuple(map(fix, spec.outputs)))
    if first is not None and len(first.shape) == 4 and len(dims) == 3:
        return dataclasses.replace(spec, inputs=(TensorSpec(first.name, (BATCH, *dims)),))
    want = "a length (e.g. 64)" if first is not None and SEQ in first.shape else \
        "C,H,W (e.g. 3,224,224)" if first is not None and len(first.shape) == 4 else "NAME:DTYPE:DIMS per input"
    raise ConfigError(f"--input-shape {','.join(map(str, dims))} does not fit {spec.name}: give {want}, or "
                      "NAME:DTYPE:DIMS per input (e.g. input_ids:int64:64,attention_mask:int64:64:1-2)")




