"""Pruning advice per SE block: remove it, fold it into BatchNorm, or keep it.

The SENet paper (Hu et al., arXiv 1709.01507, Section 7) notes that SE_5_2
saturates near 1 for every input, so it is nearly an identity and can be
dropped at little cost. Generalising that, each block gets one verdict from
its statistics (:mod:`seviz.analysis.compute`):

* ``identity``: gates are ~1 for every input (mean |1 - s| small and nearly all
  gates >= 0.95): remove the SE branch.
* ``constant``: gates are ~ a fixed per-channel vector whatever the input
  (input dependence, ``sum_c var_c / sum_c E[s_c^2]``, tiny; its square root
  is the relative RMS error of the replacement): multiply that vector into the
  preceding BatchNorm and drop the branch. ``constant_vector`` carries it.
* ``keep``: anything else.

The JSON written by :meth:`Recommendation.write` is versioned and a
deterministic function of (store, thresholds): keys sorted, floats rounded to
6 decimals, no timestamps of its own, so the app's download and the CLI's
file are equal byte for byte.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from seviz._files import atomic_write_text, check_output
from seviz.analysis import (
    SPECIFICITY_METHODS,
    BlockStatistics,
    StatsSettings,
    StoreStatistics,
    compute_statistics,
)
from seviz.analysis.results import _float, _unknown
from seviz.errors import OutputError, RecommendationError
from seviz.pruning import _rec_fields as _fields
from seviz.store import Store

RECOMMENDATION_VERSION = 1
VERDICTS = ("identity", "constant", "keep")
_HOW = "make one with `seviz recommend STORE --out rec.json`"
# The fields of rec.json (what to_dict writes); anything else is refused, so a typo is never ignored.
_TOP_FIELDS = ("seviz_recommendation", "model", "store", "thresholds", "statistics", "blocks", "totals")
_BLOCK_FIELDS = (
    "name",
    "module",
    "stage",
    "block",
    "channels",
    "verdict",
    "reason",
    "scores",
    "params",
    "flops",
    "constant_vector",
)
_STORE_TEXT = ("file", "model", "model_spec", "weights_sha256", "created", "dtype", "precision")
_MAX_FILE_BYTES = 256 << 20


@dataclass(frozen=True)
class Thresholds:
    """When a block counts as ``identity`` or ``constant`` (both tests must pass for identity).

    Attributes:
        identity_max_deviation: Largest mean |1 - s| over all gates of an
            ``identity`` block (default 0.02).
        identity_min_near_one: Smallest fraction of gates >= ``near_one`` of an
            ``identity`` block (default 0.95).
        near_one: What "near one" means (default 0.95, as in the statistics).
        constant_max_dependence: Largest input dependence of a ``constant``
            block (default 1e-3: replacing each gate by its channel mean has
            a relative RMS error of at most ~3.2%).
    """

    identity_max_deviation: float = 0.02
    identity_min_near_one: float = 0.95
    near_one: float = 0.95
    constant_max_dependence: float = 1e-3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not 0.0 <= float(value) <= 1.0:
                raise RecommendationError(f"threshold {f.name}={value!r} must be a number in [0, 1]")


def threshold_flag(field: str) -> str:
    """The ``seviz recommend`` option of a :class:`Thresholds` field: ``near_one`` -> ``--near-one``."""
    return "--" + field.replace("_", "-")


def needed_statistics(thresholds: Thresholds | None = None) -> tuple[list[str], StatsSettings]:
    """The class selection and settings :func:`recommend` computes statistics with.

    No per-class part (``classes=[]``: verdicts use every sample together) and the
    thresholds' ``near_one``; statistics computed this way (for example cached by
    the app) give a recommendation equal byte for byte to ``seviz recommend``'s.
    """
    t = thresholds or Thresholds()
    return [], StatsSettings(near_one=t.near_one)


def recommend_command(store: str, thresholds: Thresholds | None = None) -> list[str]:
    """The ``seviz recommend`` command line (as words) that judges ``store`` with ``thresholds``.

    Only thresholds that differ from the defaults are written.
    """
    t, defaults = thresholds or Thresholds(), Thresholds()
    words = ["seviz", "recommend", str(store)]
    for f in fields(Thresholds):
        value = getattr(t, f.name)
        if value != getattr(defaults, f.name):
            words += [threshold_flag(f.name), repr(float(value))]
    return words


@dataclass(frozen=True)
class BlockVerdict:
    """The verdict on one SE block and the scores that decided it."""

    name: str
    module: str
    stage: int
    block: int
    channels: int
    verdict: str
    reason: str
    scores: Mapping[str, float | None]
    params: int
    flops: int
    constant_vector: tuple[float, ...] | None = None  # per-channel mean gate, for `constant`

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scores"] = dict(self.scores)
        out["constant_vector"] = None if self.constant_vector is None else list(self.constant_vector)
        return out


@dataclass(frozen=True)
class Recommendation:
    """Verdicts on the SE blocks of one store, with the thresholds and the store's identity."""

    model: str
    store: Mapping[str, Any]
    thresholds: Thresholds
    statistics: Mapping[str, Any]
    blocks: tuple[BlockVerdict, ...]

    def block(self, name: str) -> BlockVerdict:
        for verdict in self.blocks:
            if verdict.name == name:
                return verdict
        names = [b.name for b in self.blocks]
        raise RecommendationError(_unknown("block", name, names, "the recommendation"))

    def by_verdict(self, verdict: str) -> list[BlockVerdict]:
        return [b for b in self.blocks if b.verdict == verdict]

    @property
    def totals(self) -> dict[str, Any]:
        """Counts per verdict and the SE parameters / FLOPs that pruning removes.

        ``constant`` blocks count as fully removable: their scale folds into
        the preceding BatchNorm (where there is none, a per-channel scale stays).
        """
        params = sum(b.params for b in self.blocks)
        flops = sum(b.flops for b in self.blocks)
        gone = [b for b in self.blocks if b.verdict != "keep"]
        out: dict[str, Any] = {v: len(self.by_verdict(v)) for v in VERDICTS}
        out.update(
            blocks=len(self.blocks),
            se_params=params,
            se_flops=flops,
            removable_params=sum(b.params for b in gone),
            removable_flops=sum(b.flops for b in gone),
        )
        out["removable_params_fraction"] = _float(out["removable_params"] / params) if params else 0.0
        out["removable_flops_fraction"] = _float(out["removable_flops"] / flops) if flops else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "seviz_recommendation": RECOMMENDATION_VERSION,
            "model": self.model,
            "store": dict(self.store),
            "thresholds": asdict(self.thresholds),
            "statistics": dict(self.statistics),
            "blocks": [b.to_dict() for b in self.blocks],
            "totals": self.totals,
        }

    def to_json(self) -> str:
        """The JSON text written to ``rec.json`` (deterministic; ends with a newline)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"

    def summary(self) -> str:
        """What ``seviz recommend`` prints: the verdict table (the same as ``rec.md``)."""
        return self.to_markdown()

    def to_markdown(self) -> str:
        """The same verdicts as a Markdown table a person reads."""
        t, s = self.thresholds, self.store
        lines = [
            f"# SE block recommendation: {self.model}",
            "",
            f"Store `{s.get('file', '')}`: {s.get('samples', 0)} samples, "
            f"created {s.get('created', '') or '?'}; recorded in {s.get('precision', 'fp32')} "
            f"(max gate error vs fp32 {s.get('gate_error_max_abs', 0.0):.2g})"
            + ("" if s.get("complete", True) else " (incomplete recording)")
            + ".",
            f"Thresholds: `identity` if mean \\|1 - s\\| <= {t.identity_max_deviation:g} and at least "
            f"{t.identity_min_near_one:.0%} of gates >= {t.near_one:g}; `constant` if input dependence "
            f"<= {t.constant_max_dependence:g}; otherwise `keep`.",
            "",
            f"| Block | Module | Verdict | mean \\|1 - s\\| | gates >= {t.near_one:g} | input dependence "
            "| nearest-centroid accuracy (chance) | SE params | SE FLOPs |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for b in self.blocks:
            sc = b.scores
            lines.append(
                f"| {b.name} | `{b.module}` | **{b.verdict}** | {_fmt(sc.get('mean_abs_deviation'), '.4f')} "
                f"| {_fmt(sc.get('fraction_near_one'), '.1%')} | {_fmt(sc.get('input_dependence'), '.4g')} "
                f"| {_fmt(sc.get('centroid_accuracy'), '.1%')} ({_fmt(sc.get('chance'), '.1%')}) "
                f"| {b.params:,} | {b.flops:,} |"
            )
        tot = self.totals
        lines += [
            "",
            f"**Totals**: {tot['identity']} identity, {tot['constant']} constant, {tot['keep']} keep. "
            f"Removable SE parameters {tot['removable_params']:,} of {tot['se_params']:,} "
            f"({_fmt(tot['removable_params_fraction'], '.1%')}); removable SE FLOPs "
            f"{tot['removable_flops']:,} of {tot['se_flops']:,} "
            f"({_fmt(tot['removable_flops_fraction'], '.1%')}).",
            "",
        ]
        for b in self.blocks:
            if b.verdict != "keep":
                lines.append(f"- {b.name} ({b.verdict}): {b.reason}")
        return "\n".join(lines).rstrip() + "\n"

    @staticmethod
    def output_paths(
        out_json: str | os.PathLike, overwrite: bool = False, inputs: Sequence[str | os.PathLike | None] = ()
    ) -> tuple[Path, Path]:
        """The JSON and Markdown paths :meth:`write` would write, checked before any work is done.

        Raises:
            OutputError: The two would be one file (``out_json`` ends in ``.md``), one is
                an input, or one exists and ``overwrite`` is false.
        """
        json_path = Path(out_json).expanduser()
        md_path = json_path.with_suffix(".md")
        if md_path == json_path:
            raise OutputError(
                f"`out_json` {str(json_path)!r} would hold both the JSON and the Markdown table (written "
                "beside it as .md): name it *.json",
                param="out_json",
            )
        for path in (json_path, md_path):
            check_output(path, inputs=inputs, overwrite=overwrite, param="out_json", what="recommendation")
        return json_path, md_path

    def write(
        self,
        out_json: str | os.PathLike,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
    ) -> tuple[Path, Path]:
        """Write ``out_json`` and the Markdown beside it (same name, ``.md``), each atomically.

        Args:
            out_json: The JSON file.
            overwrite: Replace existing files.
            inputs: Files neither may replace (the store the recommendation came from).

        Raises:
            OutputError: See :meth:`output_paths`.
        """
        json_path, md_path = self.output_paths(out_json, overwrite, inputs)
        atomic_write_text(json_path, self.to_json())
        atomic_write_text(md_path, self.to_markdown())
        return json_path, md_path

    @property
    def model_spec(self) -> str:
        """The ``--model`` spec of the store the recommendation was made from ("" when not recorded)."""
        value = self.store.get("model_spec", "")
        return value if isinstance(value, str) else ""

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights the store was recorded with ("" when not recorded)."""
        value = self.store.get("weights_sha256", "")
        return value if isinstance(value, str) else ""

    @classmethod
    def from_dict(cls, data: Any, source: str = "recommendation") -> Recommendation:
        """Rebuild from :meth:`to_dict` output, checking it against the schema on the way.

        Required: ``seviz_recommendation`` (the format version), ``model`` and
        ``blocks``; ``store``, ``thresholds``, ``statistics`` and ``totals``
        (recomputed) may be left out of a hand-written file. Every field has
        its type; numbers are finite (gate values in float32, integers in 64
        bits); a ``constant`` block carries one gate value >= 0 per channel.

        Raises:
            RecommendationError: The first field that does not fit, named.
        """
        _check_version(data, source)
        _fields.only_keys(data, _TOP_FIELDS, source)
        missing = [k for k in ("model", "blocks") if k not in data]
        if missing:
            raise RecommendationError(f"{source} lacks {', '.join(missing)}; {_HOW}")
        model = _fields.text(data["model"], f"{source}: model", required=True)
        store = _store_fields(data.get("store", {}), f"{source}: store")
        thresholds = _thresholds(data.get("thresholds", {}), f"{source}: thresholds")
        statistics = _statistics_fields(data.get("statistics", {}), f"{source}: statistics")
        _fields.mapping(data.get("totals", {}), f"{source}: totals")  # derived: recomputed, not read
        verdicts = _verdicts(data["blocks"], f"{source}: blocks")
        return cls(
            model=model,
            store=dict(store),
            thresholds=thresholds,
            statistics=dict(statistics),
            blocks=verdicts,
        )


def decide(block: BlockStatistics, thresholds: Thresholds | None = None) -> BlockVerdict:
    """The verdict on one block from its statistics."""
    t = thresholds or Thresholds()
    b, s = block.behaviour, block.specificity
    scores = {
        "mean_abs_deviation": _float(b.mean_abs_deviation),
        "fraction_near_one": _float(b.fraction_near_one),
        "input_dependence": _float(b.input_dependence),
        "input_std": _float(b.input_std),
        "min_gate": _float(b.min_gate),
        "centroid_accuracy": _float(s.accuracy),
        "chance": _float(s.chance),
        "variance_ratio": _float(s.variance_ratio),
    }
    near_identity = b.mean_abs_deviation <= t.identity_max_deviation
    mostly_one = b.fraction_near_one >= t.identity_min_near_one
    fixed = b.input_dependence <= t.constant_max_dependence
    relation = "<=" if near_identity else ">"
    deviation = f"mean |1 - s| {b.mean_abs_deviation:.4g} {relation} {t.identity_max_deviation:g}"
    share = (
        f"{b.fraction_near_one:.1%} of gates >= {t.near_one:g} "
        f"({'>=' if mostly_one else '<'} {t.identity_min_near_one:.0%})"
    )
    dependence = (
        f"input dependence {b.input_dependence:.4g} {'<=' if fixed else '>'} {t.constant_max_dependence:g}"
    )
    vector = None
    if near_identity and mostly_one:
        verdict, reason = "identity", f"{deviation} and {share}: remove the SE branch"
    elif fixed:
        verdict = "constant"
        reason = (
            f"{dependence} (relative RMS error of a fixed scale {b.input_dependence**0.5:.2%}): "
            "fold the per-channel mean gate into the preceding BatchNorm"
        )
        vector = tuple(round(float(v), 6) for v in block.all.mean)
    else:
        verdict, reason = "keep", f"{deviation} or {share}, and {dependence}"
    info = block.info
    return BlockVerdict(
        name=info.name,
        module=info.module,
        stage=info.stage,
        block=info.block,
        channels=info.channels,
        verdict=verdict,
        reason=reason,
        scores=scores,
        params=info.params,
        flops=info.flops,
        constant_vector=vector,
    )


def recommend(
    source: Store | StoreStatistics | str | os.PathLike,
    thresholds: Thresholds | None = None,
    blocks: Sequence[str] | None = None,
) -> Recommendation:
    """Give every SE block of a store a verdict: ``identity``, ``constant`` or ``keep``.

    Args:
        source: A store, its path, or statistics already computed from it
            (for example by the app) with the same ``near_one``.
        thresholds: Verdict thresholds; :class:`Thresholds` documents the defaults.
        blocks: Blocks to judge (default: every block of the statistics / store).

    Returns:
        A :class:`Recommendation`; ``.write("rec.json")`` writes rec.json and rec.md.

    Raises:
        StoreError: Not a seviz store, or a block that is not in it.
        RecommendationError: ``source`` statistics used another ``near_one``.
    """
    t = thresholds or Thresholds()
    if isinstance(source, StoreStatistics):
        stats = source
        if stats.settings.near_one != t.near_one:
            raise RecommendationError(
                f"the statistics count gates >= {stats.settings.near_one:g} but thresholds.near_one is "
                f"{t.near_one:g}; recompute with StatsSettings(near_one={t.near_one:g}) or pass the store"
            )
        names = stats.block_names if blocks is None else list(blocks)
        judged = [stats.block(name) for name in names]
    else:
        classes, settings = needed_statistics(t)
        stats = compute_statistics(source, blocks, classes=classes, settings=settings)
        judged = list(stats.blocks.values())
    settings = stats.settings
    return Recommendation(
        model=stats.model,
        store=dict(stats.store),
        thresholds=t,
        statistics={
            "near_one": settings.near_one,
            "folds": settings.folds,
            "max_eval_samples": settings.max_eval_samples,
            "specificity_methods": list(SPECIFICITY_METHODS),
            "input_dependence": "sum_c var_c / sum_c E[s_c^2] over all samples",
        },
        blocks=tuple(decide(block, t) for block in judged),
    )


def load_recommendation(
    source: str | os.PathLike | Mapping[str, Any] | Recommendation, model: str | None = None
) -> Recommendation:
    """Read and check a ``rec.json`` written by :meth:`Recommendation.write`: the one reader of the format.

    Args:
        source: The JSON file, its parsed content, or a :class:`Recommendation`.
        model: If given, the model the recommendation must be for.

    Raises:
        FileNotFoundError: No such file.
        RecommendationError: Not JSON, not a seviz recommendation, a field that
            does not fit the schema (see :meth:`Recommendation.from_dict`), or
            one for another model.
    """
    if isinstance(source, Recommendation):
        rec, where = source, "the recommendation"
    elif isinstance(source, Mapping):
        where = "the recommendation"
        rec = Recommendation.from_dict(dict(source), source=where)
    else:
        path = Path(source).expanduser()
        where = repr(str(path))
        rec = Recommendation.from_dict(_read_json(path), source=where)
    if model is not None and rec.model != model:
        raise RecommendationError(
            f"{where} is a recommendation for model {rec.model!r}, not {model!r}; "
            f"run `seviz recommend` on a store recorded with {model!r}"
        )
    return rec


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"recommendation {str(path)!r} does not exist; {_HOW}")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise RecommendationError(
            f"{str(path)!r} is {path.stat().st_size:,} bytes, far more than a recommendation; {_HOW}"
        )

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_constant)
    except RecursionError:
        raise RecommendationError(f"{str(path)!r} nests too deeply to be a recommendation; {_HOW}") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, an integer of thousands of digits, bad UTF-8
        raise RecommendationError(f"{str(path)!r} is not a JSON file ({str(error)[:200]}); {_HOW}") from None


def _thresholds(data: Any, where: str) -> Thresholds:
    data = _fields.mapping(data, where)
    _fields.only_keys(data, [f.name for f in fields(Thresholds)], where)
    return Thresholds(**{key: _fields.number(value, f"{where}.{key}") for key, value in data.items()})


def _check_version(data: Any, source: str) -> None:
    """Raise unless ``data`` is a mapping with a recommendation version this seviz reads."""
    if not isinstance(data, dict) or "seviz_recommendation" not in data:
        raise RecommendationError(
            f"{source} is not a seviz recommendation (no 'seviz_recommendation' key); {_HOW}"
        )
    version = data["seviz_recommendation"]
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= RECOMMENDATION_VERSION
    ):
        raise RecommendationError(
            f"{source} has recommendation version {_fields.shown(version)}; this seviz reads 1 to "
            f"{RECOMMENDATION_VERSION} (upgrade seviz for a newer one)"
        )


def _store_fields(data: Any, where: str) -> dict[str, Any]:
    """The ``store`` mapping, each field checked against its type."""
    store = _fields.mapping(data, where)
    for key, value in store.items():
        at = f"{where}.{key}"
        if key in _STORE_TEXT:
            _fields.text(value, at)
        elif key == "samples":
            _fields.integer(value, at)
        elif key == "complete":
            if not isinstance(value, bool):
                raise _fields.fail(at, f"is {_fields.kind(value)}, not true/false")
        elif key == "gate_error_max_abs":
            _fields.number(value, at, low=0.0, high=None)
        elif key == "preprocessing":  # the store's data config: pruning and evaluating reuse it
            for name, item in _fields.mapping(value, at).items():
                for i, v in enumerate(item if isinstance(item, list) else [item]):
                    _fields.scalar(v, f"{at}.{name}[{i}]" if isinstance(item, list) else f"{at}.{name}")
        else:
            _fields.scalar(value, at)
    return store


def _statistics_fields(data: Any, where: str) -> dict[str, Any]:
    """The ``statistics`` mapping, each value a scalar or a list of scalars."""
    statistics = _fields.mapping(data, where)
    for key, value in statistics.items():
        at = f"{where}.{key}"
        if isinstance(value, list):
            for i, item in enumerate(value):
                _fields.scalar(item, f"{at}[{i}]")
        else:
            _fields.scalar(value, at)
    return statistics


def _verdicts(blocks: Any, where: str) -> tuple[BlockVerdict, ...]:
    """The ``blocks`` list as verdicts, each checked, no block named twice."""
    if not isinstance(blocks, list):
        raise _fields.fail(where, f"is {_fields.kind(blocks)}, not a list of block verdicts")
    verdicts = tuple(_verdict_from_dict(b, f"{where}[{i}]") for i, b in enumerate(blocks))
    names = [v.name for v in verdicts]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _fields.fail(where, f"name {twice!r} twice; give each block one verdict")
    return verdicts


def _verdict_from_dict(data: Any, where: str) -> BlockVerdict:
    block = _fields.mapping(data, where)
    name = block.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({name})"
    _fields.only_keys(block, _BLOCK_FIELDS, where)
    missing = [k for k in ("name", "verdict") if k not in block]
    if missing:
        raise RecommendationError(f"{where} lacks {', '.join(missing)}; {_HOW}")
    name = _fields.text(block["name"], f"{where}.name", required=True)
    verdict = _fields.text(block["verdict"], f"{where}.verdict")
    if verdict not in VERDICTS:
        raise RecommendationError(f"{where} has verdict {verdict!r}; expected one of {', '.join(VERDICTS)}")
    channels = _fields.integer(block.get("channels", 0), f"{where}.channels", high=_fields.MAX_CHANNELS)
    vector = block.get("constant_vector")
    if vector is not None:
        vector = _fields.gate_vector(vector, f"{where}.constant_vector", channels)
    elif verdict == "constant":
        raise RecommendationError(
            f"{where} is 'constant' but has no constant_vector (the per-channel gate to fold); {_HOW}"
        )
    scores = _fields.mapping(block.get("scores", {}), f"{where}.scores")
    for key, value in scores.items():
        if value is not None:
            _fields.number(value, f"{where}.scores.{key}", high=None)
    return BlockVerdict(
        name=name,
        module=_fields.text(block.get("module", ""), f"{where}.module"),
        stage=_fields.integer(block.get("stage", 0), f"{where}.stage", high=10_000),
        block=_fields.integer(block.get("block", 0), f"{where}.block", high=10_000),
        channels=channels or (len(vector) if vector else 0),
        verdict=verdict,
        reason=_fields.text(block.get("reason", ""), f"{where}.reason"),
        scores=dict(scores),
        params=_fields.integer(block.get("params", 0), f"{where}.params"),
        flops=_fields.integer(block.get("flops", 0), f"{where}.flops"),
        constant_vector=vector,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
