"""Which SE gates seviz finds across timm's model registry: the README's "Supported SE gates" table.

    python scripts/zoo_coverage.py --readme README.md      # rewrite the README's table in place
    python scripts/zoo_coverage.py --out coverage.md --json coverage.json

What it does, for the installed timm (and torchvision's classification models):

1. Groups ``timm.list_models()`` into families: the timm module that defines a
   model, and its name with sizes and numbers left out (``ecaresnet26t`` and
   ``ecaresnet50t`` are one family, ``ecaresnet50d`` another, ``resnest50d``
   and ``resnest50d_1s4x24d`` two), and takes the smallest-named variant of
   each (``atto`` before ``base``, then the smallest numbers).
2. Builds it on the meta device (shapes only: no weights, no arithmetic, so a
   3-billion-parameter model costs what a small one does) and runs
   :func:`seviz.se.discover_se_gates` on its default input size. The same
   forward pass counts, independently of seviz's adapters, every sigmoid or
   hard sigmoid whose output is one value per channel: the SE-style gates the
   model has, found or not.
3. For each family with gates and under ``--max-params``, builds the model
   again with random weights on the CPU and records one small batch
   (``--input-size``, or the default input size where the model needs it):
   the recorder must return one (N, C) gate per block, with values in [0, 1].

Each family gets one verdict: ``discovered`` (every per-channel gate found),
``partly discovered`` (some per-channel sigmoids left out), ``missed`` (it has
per-channel gates but seviz finds none), ``refused`` (its only attention is not
an SE gate, with seviz's reason) or ``no attention``. The Markdown lists every
gate kind seviz supports with the families that use it, the families refused
and why, and any missed.

Runs on one CPU thread; about 10 minutes on a shared 2-core machine for timm
1.0.31 (~560 families). ``--filter`` takes globs on model names for a quick look.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import re
import signal
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from seviz.errors import NoSEBlocksError
from seviz.se import Recorder, discover_se_gates
from seviz.se.adapters import _ADAPTERS
from seviz.se.non_gates import non_se_attention

_ATTENTION_NAME = re.compile(r"attn|attention|mla\b|mhsa", re.IGNORECASE)
README_START = "<!-- zoo-coverage:start (scripts/zoo_coverage.py writes this table) -->"
README_END = "<!-- zoo-coverage:end -->"

SIZE_WORDS = (
    "zepto atto femto pico nano xxxtiny xxtiny xtiny tiny mini xxsmall xsmall small medium base big "
    "large xlarge xxlarge huge giant gigantic enormous"
).split()
_SIZE = re.compile(r"(?<![a-z])(" + "|".join(sorted(SIZE_WORDS, key=len, reverse=True)) + r")(?![a-z])")

# Kinds that no registered timm or torchvision model uses: what builds them.
BUILT_BY = {
    "timm.CecaModule": "timm ResNet with `attn_layer='ceca'`",
    "timm.Cbam.channel": "timm ResNet with `attn_layer='cbam'` (the channel half; the spatial half is not a gate)",
    "timm.LightCbam.channel": "timm ResNet with `attn_layer='lcbam'` (hooked at `fc2`, sigmoid applied by seviz)",
    "timm.GatherExcite": (
        "timm ResNet with `attn_layer='ge'`, global extent (timm 1.0.31 cannot build it with its MLP: "
        "`ConvMlp(..., *dd)` passes 'device', 'dtype' positionally)"
    ),
    "timm.GlobalContext+add": "`GlobalContext(fuse_scale=True, fuse_add=True)` (edited at its gate)",
    "timm.SqueezeExciteCl": "channels-last SE of timm's layers",
    "structural.pool_sigmoid": "hand-written blocks: a pool and one sigmoid as children",
    "structural.sequential_gate": "hand-written `nn.Sequential` ending in a sigmoid (its parent multiplies)",
}


@dataclass
class Family:
    """One family of the registry and what seviz makes of its smallest variant."""

    source: str  # timm module (``resnet``) or ``torchvision``
    key: str  # the name pattern (``ecaresnet#t``)
    models: list[str]
    model: str = ""  # the variant probed
    params: int = 0
    verdict: str = ""
    kinds: dict[str, int] = field(default_factory=dict)
    counted_gates: int = 0
    found: int = 0
    refusal: str = ""
    others: dict[str, int] = field(default_factory=dict)
    unnamed: list[str] = field(
        default_factory=list
    )  # classes named like attention that seviz does not classify
    recorded: str = ""  # the random-weight check: "ok", "skipped: ...", or the failure
    error: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------- families


def family_key(name: str) -> str:
    return re.sub(r"\d+", "#", _SIZE.sub("*", name))


def size_rank(name: str) -> tuple[int, int, int]:
    """Smaller first: the size word, then the sum of the name's numbers, then its length."""
    words = _SIZE.findall(name)
    word = min((SIZE_WORDS.index(w) for w in words), default=SIZE_WORDS.index("base"))
    return word, sum(int(n) for n in re.findall(r"\d+", name)), len(name)


def timm_families(patterns: list[str]) -> list[Family]:
    import timm
    from timm.models._registry import _model_to_module

    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in timm.list_models():
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        module = _model_to_module.get(name, "?")
        groups[(module, family_key(name))].append(name)
    families = [Family(source, key, sorted(names, key=size_rank)) for (source, key), names in groups.items()]
    return sorted(families, key=lambda f: (f.source, f.key))


def torchvision_families(patterns: list[str]) -> list[Family]:
    import torchvision

    groups: dict[str, list[str]] = defaultdict(list)
    for name in torchvision.models.list_models(module=torchvision.models):
        if patterns and not any(fnmatch.fnmatchcase(f"torchvision:{name}", p) for p in patterns):
            continue
        groups[family_key(name)].append(name)
    return [Family("torchvision", key, sorted(names, key=size_rank)) for key, names in sorted(groups.items())]


# ---------------------------------------------------------------- probing


PROBE_BATCH = 3  # not 1: a sigmoid of a parameter alone (ConViT's head gating) has batch 1


def _gate_channels(shape: torch.Size) -> int | None:
    """C for a per-image, per-channel shape: (B, C), (B, 1, C), (B, C, 1, 1), (B, 1, 1, C)."""
    if not shape or shape[0] != PROBE_BATCH:
        return None
    if len(shape) == 2:
        channels = shape[1]
    elif len(shape) == 3 and shape[1] == 1:
        channels = shape[2]
    elif len(shape) == 4 and shape[2:] == (1, 1):
        channels = shape[1]
    elif len(shape) == 4 and shape[1:3] == (1, 1):
        channels = shape[3]
    else:
        return None
    return channels if channels > 1 else None


class GateCounter(TorchFunctionMode):
    """Counts SE-style gates in a forward pass, independently of seviz's adapters.

    A gate: the result of a sigmoid or hard sigmoid (a module or an inline call) holding
    one value per image and channel, that multiplies a feature map with that many
    channels (through views and expands on the way, as ECA's ``y.expand_as(x)``). A
    sigmoid that mixes experts (CondConv's routing) or gates attention heads is not one.
    """

    SIGMOIDS = {
        torch.sigmoid,
        torch.sigmoid_,
        torch.Tensor.sigmoid,
        torch.Tensor.sigmoid_,
        torch.special.expit,
        torch.nn.functional.hardsigmoid,
    }
    PASS_THROUGH = {
        torch.Tensor.view,
        torch.Tensor.reshape,
        torch.reshape,
        torch.Tensor.expand,
        torch.Tensor.expand_as,
        torch.Tensor.flatten,
        torch.flatten,
        torch.Tensor.unsqueeze,
        torch.unsqueeze,
        torch.Tensor.squeeze,
        torch.squeeze,
        torch.Tensor.permute,
        torch.permute,
        torch.Tensor.transpose,
        torch.transpose,
        torch.Tensor.contiguous,
        torch.Tensor.to,
        torch.Tensor.type_as,
        torch.Tensor.__getitem__,
        torch.Tensor.clone,
        torch.Tensor.float,
        torch.Tensor.half,
        torch.Tensor.bfloat16,
    }
    MULTIPLY = {
        torch.mul,
        torch.Tensor.mul,
        torch.Tensor.mul_,
        torch.Tensor.__mul__,
        torch.Tensor.__rmul__,
        torch.Tensor.__imul__,
    }

    def __init__(self) -> None:
        super().__init__()
        self.sigmoids = 0  # per-channel sigmoid results
        self.gates: set[int] = set()  # those that scaled a feature map
        self._origin: dict[int, tuple[int, int]] = {}  # id(tensor) -> (sigmoid index, channels)
        self._alive: list[torch.Tensor] = []  # keeps tracked tensors alive, so their ids stay theirs

    @property
    def count(self) -> int:
        return len(self.gates)

    def _track(self, tensor: torch.Tensor, origin: tuple[int, int]) -> None:
        self._origin[id(tensor)] = origin
        self._alive.append(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if not isinstance(result, torch.Tensor):
            return result
        if func in self.SIGMOIDS:
            channels = _gate_channels(result.shape)
            if channels is not None:
                self._track(result, (self.sigmoids, channels))
                self.sigmoids += 1
        elif func in self.PASS_THROUGH and args and id(args[0]) in self._origin:
            self._track(result, self._origin[id(args[0])])
        elif func in self.MULTIPLY:
            operands = [a for a in args[:2] if isinstance(a, torch.Tensor)]
            if len(operands) == 2:
                for gate, features in (operands, operands[::-1]):
                    origin = self._origin.get(id(gate))
                    if (
                        origin is not None
                        and features.dim() >= 3
                        and features.shape[0] == PROBE_BATCH
                        and origin[1] in (features.shape[1], features.shape[-1])
                    ):
                        self.gates.add(origin[0])
        return result


class Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(_signum, _frame):
        raise Timeout(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def build(family: Family, name: str, device: str) -> tuple[nn.Module, tuple[int, int, int]]:
    with torch.device(device):
        if family.source == "torchvision":
            import torchvision

            model = torchvision.models.get_model(name, weights=None)
            return model.eval(), (3, 224, 224)
        import timm

        model = timm.create_model(name, pretrained=False)
    size = tuple(int(v) for v in model.pretrained_cfg.get("input_size", (3, 224, 224)))
    return model.eval(), size  # type: ignore[return-value]


def probe(family: Family, input_size: int, max_params: int, seconds: int) -> None:
    """Fill in ``family``'s verdict from its smallest variant."""
    start = time.perf_counter()
    family.model = family.models[0]
    try:
        with time_limit(seconds):
            try:
                model, size = build(family, family.model, "meta")
            except Exception:  # a builder that reads tensor values (torchvision's RegNets): real weights
                model, size = build(family, family.model, "cpu")
            device = next(model.parameters()).device
            family.params = sum(p.numel() for p in model.parameters())
            others = (non_se_attention(m) for m in model.modules())
            family.others = dict(_count(other.kind for other in others if other is not None))
            with GateCounter() as counter, torch.no_grad():  # the gates the model has, seviz aside
                model(torch.zeros(PROBE_BATCH, *size, device=device))
            family.counted_gates = counter.count
            try:
                gates = discover_se_gates(model, size)
            except NoSEBlocksError as refused:
                gates, family.refusal = [], str(refused)
            family.found = len(gates)
            family.kinds = dict(_count(g.kind for g in gates))
            family.verdict = _verdict(family)
            if family.verdict == "no attention":  # a report's hint only: seviz never matches by name
                named = {
                    type(m).__name__ for m in model.modules() if _ATTENTION_NAME.search(type(m).__name__)
                }
                family.unnamed = sorted(named)
            if gates:
                family.recorded = record_check(family, input_size, max_params)
    except Exception as error:  # a model seviz cannot even probe is reported, not hidden
        family.verdict = family.verdict or "error"
        family.error = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    family.seconds = round(time.perf_counter() - start, 2)


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item] += 1
    return counts


def _verdict(family: Family) -> str:
    if family.found:
        # A gate counted per call: a block run twice, or a (B, C) sigmoid that is not a gate, counts too.
        return "discovered" if family.counted_gates <= family.found else "partly discovered"
    if family.counted_gates:
        return "missed"
    if family.others:
        return "refused"
    return "no attention"


def record_check(family: Family, input_size: int, max_params: int) -> str:
    """Random weights on the CPU: one (N, C) gate per block, each in [0, 1]."""
    if family.params > max_params:
        return f"skipped: {family.params / 1e6:.0f}M parameters > --max-params"
    torch.manual_seed(0)
    model, size = build(family, family.model, "cpu")
    sizes = [(size[0], input_size, input_size), size] if input_size < size[1] else [size]
    last: Exception | None = None
    for probe_size in sizes:
        try:
            gates = discover_se_gates(model, probe_size)
            with torch.no_grad(), Recorder(model, gates) as recorder:
                model(torch.randn(2, *probe_size))
                values = recorder.pop()
        except Exception as error:  # e.g. a fixed-size ViT at the small size: try its own
            last = error
            continue
        bad = [
            name
            for name, v in values.items()
            if v.dim() != 2 or v.shape[0] != 2 or not bool(((v >= 0) & (v <= 1)).all())
        ]
        if len(values) != family.found or bad:
            return f"FAILED: {len(values)} gates recorded of {family.found}; out of [0, 1] or not (N, C): {bad[:3]}"
        return f"ok at {probe_size[1]}x{probe_size[2]}"
    return f"FAILED: {type(last).__name__}: {last}".splitlines()[0][:200]


# ---------------------------------------------------------------- report


def _label(family: Family) -> str:
    more = len(family.models) - 1
    tag = "torchvision:" if family.source == "torchvision" else ""
    return f"`{tag}{family.model}`" + (f" (+{more})" if more else "")


def _examples(families: list[Family], cap: int | None) -> str:
    shown = families if cap is None else families[:cap]
    rest = len(families) - len(shown)
    return ", ".join(_label(f) for f in shown) + (f", and {rest} more" if rest else "")


def _reasons(refusal: str) -> dict[str, str]:
    """{kind: why} from a NoSEBlocksError message (see seviz.se.discover._refusal)."""
    match = re.search(r"not a per-channel gate: (.*?)\. An SE gate", refusal)
    reasons = {}
    for part in re.split(r"; (?=\d+ \S+ \()", match.group(1)) if match else []:
        found = re.match(r"\d+ (.+?) \([^)]*\): (.*)", part)
        if found:
            reasons[found.group(1)] = found.group(2)
    return reasons


def markdown(families: list[Family], seconds: float, cap: int | None = 8, max_params: float = 60e6) -> str:
    """The coverage table; ``cap`` examples per row (None: every family)."""
    import timm
    import torchvision

    timm_only = [f for f in families if f.source != "torchvision"]
    gated = [f for f in timm_only if f.found or f.counted_gates]
    verdicts = defaultdict(list)
    for family in timm_only:
        verdicts[family.verdict].append(family)
    found, partly = verdicts["discovered"], verdicts["partly discovered"]
    errors = [f for f in families if f.error]
    checked = [f for f in families if f.recorded.startswith("ok")]
    failed = [f for f in families if f.recorded.startswith("FAILED")]
    skipped = [f for f in families if f.recorded.startswith("skipped")]
    lines = [
        f"timm {timm.__version__}: {sum(len(f.models) for f in timm_only)} models in {len(timm_only)} "
        f"families (a family: one timm module, names equal up to sizes and numbers). "
        f"**{len(gated)} families have SE-style gates; seviz discovers them in {len(found) + len(partly)}** "
        f"({len(found)} every gate, {len(partly)} some, {len(verdicts['missed'])} none). "
        f"{len(verdicts['refused'])} families are refused: their only attention is not a per-channel gate. "
        f"{len(verdicts['no attention'])} have neither. With torchvision {torchvision.__version__}'s "
        f"classification models (marked), recording with random weights was checked in {len(checked)} of "
        f"the {len(checked) + len(failed) + len(skipped)} families with gates ({len(failed)} failed, "
        f"{len(skipped)} over {max_params / 1e6:.0f}M parameters not built: "
        + ", ".join(f"`{f.model}`" for f in skipped)
        + f"); {len(errors)} families could not be probed. Sweep: {seconds / 60:.1f} min.",
        "",
        "| gate kind | families | the smallest variant probed in each (+ other variants of the family) |",
        "|---|---|---|",
    ]
    by_kind: dict[str, list[Family]] = defaultdict(list)
    for family in families:
        for kind in family.kinds:
            by_kind[kind].append(family)
    for users in by_kind.values():  # the families with most variants first
        users.sort(key=lambda f: (-len(f.models), f.model))
    for adapter in _ADAPTERS:
        users = by_kind.get(adapter.kind, [])
        if users:
            count = sum(f.source != "torchvision" for f in users)
            tv = sum(f.source == "torchvision" for f in users)
            lines.append(
                f"| `{adapter.kind}` | {count}"
                + (f" + {tv} tv" if tv else "")
                + f" | {_examples(users, cap)} |"
            )
        else:
            lines.append(f"| `{adapter.kind}` | 0 | none registered: {BUILT_BY.get(adapter.kind, '-')} |")
    by_other: dict[str, list[Family]] = defaultdict(list)
    why: dict[str, str] = {}
    for family in verdicts["refused"]:
        for kind, reason in _reasons(family.refusal).items():
            by_other[kind].append(family)
            why.setdefault(kind, reason)
    lines += ["", "Refused, with the reason seviz gives (a family may hold several kinds):", ""]
    lines += ["| attention found | families | why it is not an SE gate | e.g. |", "|---|---|---|---|"]
    for kind, users in sorted(by_other.items(), key=lambda item: -len(item[1])):
        users.sort(key=lambda f: (-len(f.models), f.model))
        lines.append(f"| `{kind}` | {len(users)} | {why[kind]} | {_examples(users, min(cap or 99, 4))} |")
    hinted = [f for f in verdicts["no attention"] if f.unnamed]
    if hinted:
        lines += [
            "",
            f"Of the {len(verdicts['no attention'])} families with neither, {len(hinted)} hold modules named "
            "like attention that seviz does not classify (so its error cannot name them); none has a "
            "per-channel sigmoid: "
            + ", ".join(
                f"{_label(f)} ({', '.join(f.unnamed)})" for f in (hinted if cap is None else hinted[:cap])
            )
            + (f", and {len(hinted) - cap} more" if cap is not None and len(hinted) > cap else "")
            + ".",
        ]
    gaps = partly + verdicts["missed"]
    if gaps:
        lines += [
            "",
            "Gates seviz leaves out (counted independently in one forward pass: per-image, per-channel sigmoids that scale a feature map):",
            "",
        ]
        lines += ["| family | gates counted | gates found | kinds found |", "|---|---|---|---|"]
        for family in gaps:
            kinds = ", ".join(f"`{k}`" for k in family.kinds) or "-"
            lines.append(f"| {_label(family)} | {family.counted_gates} | {family.found} | {kinds} |")
    if errors or failed:
        lines += ["", "Not probed, or failed the recording check:", ""]
        lines += ["| family | problem |", "|---|---|"]
        for family in errors + failed:
            lines.append(f"| {_label(family)} | {(family.error or family.recorded).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_readme(path: Path, table: str) -> None:
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{path} has no {README_START!r} ... {README_END!r} markers to replace")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """One torch thread, no warnings, seviz's INFO lines off; all restored after."""
    threads, seviz_log = torch.get_num_threads(), logging.getLogger("seviz")
    level = seviz_log.level
    torch.set_num_threads(1)
    seviz_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(threads)
        seviz_log.setLevel(level)


def sweep(args: argparse.Namespace) -> list[Family]:
    families = timm_families(args.filter)
    if not args.no_torchvision:
        families += torchvision_families(args.filter)
    for index, family in enumerate(families, 1):
        probe(family, args.input_size, int(args.max_params), args.timeout)
        print(
            f"[{index}/{len(families)}] {family.source}:{family.model}: {family.verdict} "
            f"{family.kinds or ''} {family.recorded} {family.error} ({family.seconds} s)",
            file=sys.stderr,
            flush=True,
        )
    return families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", nargs="*", default=[], help="model-name globs (torchvision:NAME too)")
    parser.add_argument("--no-torchvision", action="store_true", help="timm only")
    parser.add_argument("--input-size", type=int, default=64, help="side of the random-weight check's images")
    parser.add_argument("--max-params", type=float, default=60e6, help="largest model built with weights")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per family")
    parser.add_argument("--out", type=Path, help="write the Markdown here")
    parser.add_argument("--readme", type=Path, help="replace the table between the README's markers")
    parser.add_argument("--json", type=Path, help="write every family's record here")
    parser.add_argument("--from-json", type=Path, help="render a previous sweep's --json instead of sweeping")
    parser.add_argument("--full", action="store_true", help="list every family, not the first 8 per row")
    args = parser.parse_args(argv)

    if args.from_json:
        records = json.loads(args.from_json.read_text())
        families = [Family(**record) for record in records]
        seconds = sum(f.seconds for f in families)
    else:
        start = time.perf_counter()
        with _quiet():
            families = sweep(args)
        seconds = time.perf_counter() - start
    table = markdown(families, seconds, cap=None if args.full else 8, max_params=args.max_params)
    if args.out:
        args.out.write_text(table)
    if args.readme:
        write_readme(args.readme, table)
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in families], indent=1))
    if not (args.out or args.readme):
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
