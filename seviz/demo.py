"""``seviz demo``: the whole job, offline, on the shipped demo model and images.

Records the shipped CIFAR-10 sample with ``se_resnet50_cifar10`` (SE-ResNet-50's
block structure, trained by ``data/train_demo_model.py``), computes the
statistics, writes the recommendation and the paper's figures, attributes the
gates with captum, then verifies the recommendation on the model with
:func:`seviz.evaluate.evaluate` and repeats the paper's stage-5 experiment
(all SE_5_* branches removed). Everything lands in one folder; the summary
ends with the ``seviz app`` command that opens it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz._files import atomic_write_text, check_output
from seviz.errors import OutputError

if TYPE_CHECKING:
    from torch import nn

    from seviz.analysis import StoreStatistics
    from seviz.pruning import EvaluationReport, PrunedModel, Recommendation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and the headline figures."""

    out_dir: Path
    store: Path
    recommendation: Path
    figures: list[Path]
    evaluation: Path
    stage5: Path
    seconds: float
    table: list[dict[str, Any]] = field(default_factory=list)
    verified: dict[str, Any] = field(default_factory=dict)
    stage5_figures: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"seviz demo: {self.out_dir} ({self.seconds:.0f} s)",
            "",
            f"{'block':8} {'channels':>8} {'specificity':>11} {'mean|1-s|':>9} {'input-dep':>9} {'verdict':>8} "
            f"{'remove-alone':>12}",
        ]
        for row in self.table:
            delta = row.get("delta_top1")
            delta_text = f"{100 * delta:+.2f} pt" if delta is not None else "-"
            lines.append(
                f"{row['name']:8} {row['channels']:>8} {row['specificity']:>11.3f} {row['mean_abs_deviation']:>9.4f} "
                f"{row['input_dependence']:>9.4f} {row['verdict']:>8} {delta_text:>12}"
            )
        v = self.verified
        if v.get("blocks"):
            lines.append(
                f"\nrecommendation ({', '.join(v['blocks'])} removed/folded), verified on {v['images']} images: "
                f"top-1 {100 * v['top1_before']:.2f}% -> {100 * v['top1_after']:.2f}% "
                f"({100 * (v['top1_after'] - v['top1_before']):+.2f} pt), agreement {100 * v['agreement_top1']:.2f}%, "
                f"params -{v['params_removed']:,}"
            )
        else:
            lines.append(
                "\nno block was flagged identity or constant with the default thresholds; "
                "the per-block 'remove-alone' column shows what each removal would cost"
            )
        s = self.stage5_figures
        lines.append(
            f"stage-5 experiment (all SE_5_* removed): top-1 {100 * s['top1_before']:.2f}% -> "
            f"{100 * s['top1_after']:.2f}% ({100 * (s['top1_after'] - s['top1_before']):+.2f} pt), "
            f"params {s['params_before']:,} -> {s['params_after']:,} (SE share {100 * s['se_share_before']:.1f}% -> "
            f"{100 * s['se_share_after']:.1f}%)"
        )
        lines += [
            "",
            f"store:          {self.store}",
            f"recommendation: {self.recommendation} (+ .md)",
            f"evaluation:     {self.evaluation}, {self.stage5}",
            f"figures:        {len(self.figures)} files in {self.figures[0].parent if self.figures else '-'}",
            "",
            f"explore it:     seviz app {self.store}",
        ]
        return "\n".join(lines)


def run_demo(
    out: str | Path = "seviz-demo",
    overwrite: bool = False,
    data: str | Path | None = None,
    images_per_class: int | None = None,
    progress: bool = True,
) -> DemoResult:
    """Run record -> analyze -> recommend -> plot -> attribute -> verify on the demo model.

    Args:
        out: Folder for every output (created).
        overwrite: Replace the outputs of an earlier demo in ``out``.
        data: Image folder (default: the CIFAR-10 sample shipped with seviz).
        images_per_class: Use the first N images of each class.
        progress: Show progress bars.

    Raises:
        OutputError: ``out`` holds an earlier demo's files and ``overwrite`` is false, or
            lies inside ``data`` (its figures would become images to record).
    """
    from seviz.models.demo_network import DEMO_MODEL_NAME, sample_dir
    from seviz.recording import record

    began = time.perf_counter()
    out_dir = Path(out).expanduser()
    store = out_dir / "demo.h5"
    data_dir = Path(data).expanduser() if data else sample_dir()
    _check_outputs(out_dir, data_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)

    log.info("1/6 recording %s on %s", DEMO_MODEL_NAME, data_dir)
    record(
        DEMO_MODEL_NAME,
        data_dir,
        store,
        images_per_class=images_per_class,
        batch_size=100,
        workers=0,
        overwrite=True,
        progress=progress,
        command="seviz demo",
    )
    stats, recommendation, rec_json, figures = _analyse(store, out_dir, progress)
    report, stage5_report = _verify(
        store, out_dir, data_dir, images_per_class, recommendation, rec_json, progress
    )
    result = DemoResult(
        out_dir=out_dir,
        store=store,
        recommendation=rec_json,
        figures=figures,
        evaluation=out_dir / "evaluation.json",
        stage5=out_dir / "stage5.json",
        seconds=time.perf_counter() - began,
        table=_verdict_table(stats, recommendation, report),
        verified=_verified(recommendation, report),
        stage5_figures=_stage5_figures(store, report, stage5_report),
    )
    atomic_write_text(out_dir / "summary.txt", result.summary() + "\n")
    return result


def _analyse(
    store: Path, out_dir: Path, progress: bool
) -> tuple[StoreStatistics, Recommendation, Path, list[Path]]:
    """Steps 2-4: statistics, the recommendation, the figures and captum's rankings."""
    from seviz.analysis import compute_statistics
    from seviz.plots import save_figures
    from seviz.pruning import recommend
    from seviz.recording import attribute

    log.info("2/6 statistics")
    stats = compute_statistics(store)
    stats.write_json(out_dir / "stats.json", overwrite=True, inputs=[store], per_class=False)
    log.info("3/6 recommendation and figures")
    recommendation = recommend(stats)
    rec_json, _ = recommendation.write(out_dir / "rec.json", overwrite=True)
    # PNG only, Figure 7 for the first four classes: the demo stays within minutes on 2 cores;
    # `seviz plot` draws every class in PNG and SVG.
    figures = save_figures(stats, out_dir / "figures", formats=("png",), class_figures=stats.class_names[:4])
    log.info("4/6 captum attributions")
    attribute(store, progress=progress)
    return stats, recommendation, rec_json, figures


def _verify(
    store: Path,
    out_dir: Path,
    data_dir: Path,
    images_per_class: int | None,
    recommendation: Recommendation,
    rec_json: Path,
    progress: bool,
) -> tuple[EvaluationReport, EvaluationReport]:
    """Steps 5-6: the recommendation and the paper's stage-5 removal, each measured on the images."""
    from seviz.data import find_images
    from seviz.models import load_model
    from seviz.models.demo_network import DEMO_MODEL_NAME
    from seviz.pruning import evaluate, prune_blocks, prune_from_recommendation

    log.info("5/6 verifying the recommendation")
    loaded = load_model(DEMO_MODEL_NAME)
    items = find_images(data_dir, loaded, None, images_per_class)
    edited: nn.Module | PrunedModel
    if any(b.verdict != "keep" for b in recommendation.blocks):
        edited = prune_from_recommendation(loaded, rec_json)
        edited.save(out_dir / "pruned.safetensors", overwrite=True)
    else:
        edited = load_model(DEMO_MODEL_NAME).model  # an unedited twin: only the per-block deltas matter
    report = evaluate(loaded, edited, items, batch_size=100, per_block=True, progress=progress)
    report.write_json(out_dir / "evaluation.json", overwrite=True)
    log.info("6/6 the paper's stage-5 experiment")
    stage5 = prune_blocks(loaded, "SE_5_*")
    stage5_report = evaluate(loaded, stage5, items, batch_size=100, progress=progress)
    stage5_report.write_json(out_dir / "stage5.json", overwrite=True)
    return report, stage5_report


def _verdict_table(
    stats: StoreStatistics, recommendation: Recommendation, report: EvaluationReport
) -> list[dict[str, Any]]:
    """One row per block: specificity, gate behaviour, verdict, and the cost of removing it alone."""
    removal = {b.name: b for b in report.per_block or ()}
    table = []
    for verdict in recommendation.blocks:
        block = stats.block(verdict.name)
        table.append(
            {
                "name": verdict.name,
                "channels": block.channels,
                "specificity": block.specificity.accuracy,
                "mean_abs_deviation": block.behaviour.mean_abs_deviation,
                "input_dependence": block.behaviour.input_dependence,
                "verdict": verdict.verdict,
                "delta_top1": removal[verdict.name].delta_top1 if verdict.name in removal else None,
            }
        )
    return table


def _verified(recommendation: Recommendation, report: EvaluationReport) -> dict[str, Any]:
    return {
        "blocks": [b.name for b in recommendation.blocks if b.verdict != "keep"],
        "images": report.images,
        "top1_before": report.original.top1,
        "top1_after": report.edited.top1,
        "agreement_top1": report.agreement_top1,
        "params_removed": report.original.params - report.edited.params,
    }


def _stage5_figures(store: Path, report: EvaluationReport, stage5: EvaluationReport) -> dict[str, Any]:
    """The paper's stage-5 experiment: accuracy, and the SE share of the parameters before and after."""
    blocks = _block_infos(store)
    se_params = sum(b.params for b in blocks)
    stage5_params = sum(b.params for b in blocks if b.name.startswith("SE_5_"))
    params_before = report.original.params
    return {
        "top1_before": stage5.original.top1,
        "top1_after": stage5.edited.top1,
        "params_before": params_before,
        "params_after": stage5.edited.params,
        "se_share_before": se_params / params_before,
        "se_share_after": (se_params - stage5_params) / stage5.edited.params,
    }


_OUTPUTS = ("demo.h5", "stats.json", "rec.json", "rec.md", "pruned.safetensors", "evaluation.json", "stage5.json",
            "summary.txt")  # fmt: skip


def _check_outputs(out_dir: Path, data_dir: Path, overwrite: bool) -> None:
    """Before any work: the demo writes nothing over an earlier demo without ``overwrite``, nor into ``data``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"`out` {str(out_dir)!r} is a file; the demo needs a folder", param="out")
    check_output(out_dir / "demo.h5", folders=[data_dir], overwrite=True, param="out")
    figures = out_dir / "figures"
    earlier = [out_dir / name for name in _OUTPUTS] + (sorted(figures.iterdir()) if figures.is_dir() else [])
    for path in earlier:
        check_output(path, overwrite=overwrite, param="out", what="an earlier demo's")


def _block_infos(store_path: Path):
    from seviz.store import open_store

    with open_store(store_path) as store:
        return list(store.blocks.values())
