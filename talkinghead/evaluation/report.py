"""The evaluation report: ``REPORT.json``, a Markdown table (``REPORT.md``) and per-frame curves (``REPORT.png``).

``REPORT.json``: ``metrics`` maps lowercase metric names to the mean over frames and clips (None where a
metric could not run, its reason under ``skipped``), ``clips`` holds each clip's means and per-frame
values, ``models`` names the networks used.  The file is strict JSON: PSNR of identical frames is infinite,
written as the string ``"Infinity"`` (:mod:`.report_json`; :func:`~.report_json.loads_results` reads it back
as a float).
"""

from __future__ import annotations

from pathlib import Path

from .fvd import NO_I3D_REASON
from .protocols import mean
from .report_json import dumps_results

FID_REASON = ("torchmetrics' FID needs torch-fidelity and its InceptionV3 weights (pt_inception-2015-12-05, "
              "downloaded on first use)")
FVD_REASON = NO_I3D_REASON
SYNC_REASON = "no SyncNet weights given (--syncnet FILE)"


class FidMeter:
    """FID (torchmetrics ``FrechetInceptionDistance``, 2048-d InceptionV3 pool features) over frames of many
    clips; ``reason`` says why it cannot run (torch-fidelity or its weights missing)."""

    def __init__(self) -> None:
        self.reason, self._fid, self._count = None, None, 0
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance

            self._fid = FrechetInceptionDistance(feature=2048)
        except Exception as e:  # ModuleNotFoundError (torch-fidelity), URLError (weights offline)
            self.reason = f"{FID_REASON}: {type(e).__name__}: {str(e)[:100]}"

    def add(self, fake, real) -> None:
        """One (H, W, 3) uint8 generated frame and one real frame."""
        if self._fid is None:
            return
        import torch

        for frame, is_real in ((real, True), (fake, False)):
            self._fid.update(torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous(), real=is_real)
        self._count += 1

    @staticmethod
    def reason_of(meter: "FidMeter") -> str:
        """Why ``meter`` gave no value (after :meth:`value`)."""
        return meter.reason or "no value"

    def value(self) -> float | None:
        """FID (≥ 0, lower = closer distributions), None without a network or with fewer than 2 frames."""
        if self._fid is None or self._count < 2:
            self.reason = self.reason or "fewer than 2 frames"
            return None
        return float(self._fid.compute())


def aggregate(clips: dict[str, dict], extra: dict[str, float | None] | None = None,
              skipped: dict[str, str] | None = None) -> tuple[dict, dict]:
    """(metrics, skipped) over clips: each metric's mean of the clip means (None where none ran)."""
    names = [n for clip in clips.values() for n in clip["metrics"]]
    metrics = {n: mean([clip["metrics"].get(n) for clip in clips.values()]) for n in dict.fromkeys(names)}
    metrics.update(extra or {})
    reasons = {k: v for clip in clips.values() for k, v in clip.get("skipped", {}).items()}
    reasons.update(skipped or {})
    return metrics, {k: v for k, v in reasons.items() if metrics.get(k) is None}


def write_report(path: Path, protocol: str, clips: dict[str, dict], models: dict[str, str | None],
                 extra: dict[str, float | None] | None = None, skipped: dict[str, str] | None = None) -> dict:
    """Write ``path`` (REPORT.json), its ``.md`` table and ``.png`` curves beside it; returns the report."""
    metrics, reasons = aggregate(clips, extra, skipped)
    report = {"protocol": protocol, "metrics": metrics, "skipped": reasons, "models": models, "clips": clips}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(dumps_results(report, indent=1))
    tmp.replace(path)
    path.with_suffix(".md").write_text(markdown_table(report))
    plot_metric_curves(clips, path.with_suffix(".png"))
    return report


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def markdown_table(report: dict) -> str:
    """A Markdown table: one row per clip, one column per metric, the mean last; then the skipped metrics."""
    names = list(report["metrics"])
    lines = [f"# {report['protocol']}", "", "| clip | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, clip in report["clips"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(clip["metrics"].get(n)) for n in names) + " |")
    lines.append("| **mean** | " + " | ".join(_cell(report["metrics"][n]) for n in names) + " |")
    lines += ["", *(f"- `{k}` skipped: {v}" for k, v in report["skipped"].items())]
    lines += ["", *(f"- {k}: {v}" for k, v in report["models"].items())]
    return "\n".join(lines) + "\n"


def plot_metric_curves(clips: dict[str, dict], path: Path) -> None:
    """Per-frame curves of every metric that has per-frame values (one panel each, one line per clip)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({n for c in clips.values() for n, v in c.get("per_frame", {}).items() if any(x is not None for x in v)})
    fig, axes = plt.subplots(max(len(names), 1), 1, figsize=(8, 2 * max(len(names), 1)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        for clip, result in clips.items():
            values = [float("nan") if v is None else v for v in result["per_frame"][name]]
            ax.plot(values, marker=".", label=clip)
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("frame")
    if names:
        axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
