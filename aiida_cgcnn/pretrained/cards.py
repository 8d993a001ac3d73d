"""Model cards: one Markdown page per shipped model, with its parity and calibration plots, written
from the model's ``card.json`` and its test predictions alone (``aiida-cgcnn pretrained card``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import ONE_SIGMA
from .registry import MODELS_DIR, available, model_label

__all__ = ["write_card", "write_cards"]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _plots(name: str, entry: dict[str, Any], folder: Path, image_dir: Path) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    data = np.load(folder / "test_predictions.npz")
    mean, std, target = data["mean"], data["std"], data["target"]
    scale = np.asarray(entry["std_scale"])
    targets = entry["targets"]
    n = len(targets)
    natoms = data["num_atoms"].astype(np.float64)
    extensive = [t["basis"] != "intensive" for t in targets]
    rows = 2 if any(extensive) else 1  # extensive targets: per atom too, where small cells show
    fig, axes = plt.subplots(rows, n, figsize=(3.6 * n, 3.6 * rows), squeeze=False)
    for t, spec in enumerate(targets):
        views = [(mean[:, t], std[:, t], target[:, t], spec["basis"], "")]
        if extensive[t]:
            views.append(
                (mean[:, t] / natoms, std[:, t] / natoms, target[:, t] / natoms, "atom", " per atom")
            )
        for row, (pred, sigma, true, basis, suffix) in enumerate(views):
            ax = axes[row, t]
            ax.errorbar(
                true,
                pred,
                yerr=sigma * scale[t],
                fmt="o",
                ms=2,
                lw=0.5,
                alpha=0.5,
                elinewidth=0.5,
                color="tab:blue",
            )
            low, high = np.nanmin(true), np.nanmax(true)
            ax.plot([low, high], [low, high], "k--", lw=0.8)
            mae = float(np.mean(np.abs(pred - true)))
            ax.set_title(f"{spec['name']}{suffix}: MAE {_fmt(mae)} {spec['unit']}", fontsize=9)
            ax.set_xlabel(
                f"DFT [{spec['unit']} per {basis}]" if basis != "intensive" else f"DFT [{spec['unit']}]",
                fontsize=8,
            )
            ax.set_ylabel("predicted ± σ", fontsize=8)
            ax.tick_params(labelsize=7)
        if rows == 2 and not extensive[t]:
            axes[1, t].axis("off")
    fig.tight_layout()
    parity = image_dir / f"{name}-parity.png"
    fig.savefig(parity, dpi=110)
    plt.close(fig)

    levels = np.linspace(0.01, 0.99, 50)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for t, spec in enumerate(targets):
        z = np.abs(mean[:, t] - target[:, t]) / np.maximum(std[:, t], 1e-12)
        for factor, style, label in ((1.0, ":", "raw"), (scale[t], "-", "scaled")):
            observed = [np.mean(z <= factor * norm.ppf(0.5 + p / 2) * 1.0) for p in levels]
            ax.plot(levels, observed, style, label=f"{spec['name']} {label}", lw=1.2)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.axvline(ONE_SIGMA, color="grey", lw=0.5)
    ax.set_xlabel("expected fraction within the interval", fontsize=8)
    ax.set_ylabel("observed fraction (test part)", fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    calibration = image_dir / f"{name}-calibration.png"
    fig.savefig(calibration, dpi=110)
    plt.close(fig)
    return parity.name, calibration.name


def _metrics_table(entry: dict[str, Any]) -> list[str]:
    lines = [
        "| target | unit | basis | MAE | RMSE | MAD | MAE/MAD | R² | per-atom MAE | per-atom MAE/MAD "
        "| members' MAE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in entry["targets"]:
        m = entry["metrics"]["targets"][spec["name"]]
        per_atom = m.get("per_atom")
        atom = [_fmt(per_atom["mae"]), f"{per_atom['mae_over_mad']:.4f}"] if per_atom else ["–", "–"]
        members = ", ".join(_fmt(v) for v in m["member_mae"])
        lines.append(
            f"| {spec['name']} | {spec['unit']} | {spec['basis']} | {_fmt(m['mae'])} | {_fmt(m['rmse'])} | "
            f"{_fmt(m['mad'])} | {m['mae_over_mad']:.4f} | {m['r2']:.4f} | {' | '.join(atom)} | {members} |"
        )
    return lines


def _calibration_table(entry: dict[str, Any]) -> list[str]:
    lines = [
        "| target | scale | 1σ coverage raw → scaled | 2σ coverage raw → scaled | Spearman(abs. error, σ) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in entry["targets"]:
        m = entry["metrics"]["targets"][spec["name"]]
        raw, cal = m["calibration_raw"], m["calibration"]
        lines.append(
            f"| {spec['name']} | {m['std_scale']:.3f} "
            f"| {raw['coverage_1sigma']:.3f} → {cal['coverage_1sigma']:.3f} "
            f"| {raw['coverage_2sigma']:.3f} → {cal['coverage_2sigma']:.3f} "
            f"| {cal['spearman_error_std']:.3f} |"
        )
    return lines


def _element_table(entry: dict[str, Any], count: int = 8) -> list[str]:
    first = entry["targets"][0]
    by_element = entry["metrics"]["targets"][first["name"]]["by_element"]
    ranked = sorted(by_element.items(), key=lambda item: item[1]["mae"])
    rows = [*ranked[:count], *ranked[-count:]] if len(ranked) > 2 * count else ranked
    lines = [
        f"Test MAE of {first['name']} ({first['unit']}) over the test crystals that contain each element "
        f"(elements in at least 10 test crystals; the {min(count, len(ranked))} best and worst of "
        f"{len(ranked)}):",
        "",
        "| element | crystals | MAE |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {el} | {v['n']} | {_fmt(v['mae'])} |" for el, v in rows]
    return lines


def _size_table(entry: dict[str, Any]) -> list[str]:
    names = [t["name"] for t in entry["targets"]]
    sizes = entry["metrics"]["targets"][names[0]]["by_cell_size"]
    lines = ["| atoms per cell | crystals | " + " | ".join(f"MAE {n}" for n in names) + " |"]
    lines.append("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    for k, row in enumerate(sizes):
        values = [_fmt(entry["metrics"]["targets"][n]["by_cell_size"][k]["mae"]) for n in names]
        lines.append(f"| {row['atoms']} | {row['n']} | " + " | ".join(values) + " |")
    return lines


def write_card(name: str, docs_dir: str | os.PathLike, folder: Path | None = None) -> Path:
    """Write ``docs_dir/NAME.md`` and its plots (under ``docs_dir/images``) for model ``name``."""
    docs_dir = Path(docs_dir)
    folder = folder or MODELS_DIR / name
    entry = json.loads((folder / "card.json").read_text())
    image_dir = docs_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    parity, calibration = _plots(name, entry, folder, image_dir)
    data, split, domain = entry["data"], entry["split_counts"], entry["domain"]
    size = sum(f["bytes"] for f in entry["files"]) / 1e6
    lines = [
        f"# {name} v{entry['version']}",
        "",
        f"*{entry['title']}.* {model_label(entry)}.",
        "",
        "<!-- snippet: setup structures -->",
        "```bash",
        f"aiida-cgcnn predict --model {name} structures/*.cif -o predictions.csv",
        "```",
        "",
        "## Data",
        "",
        f"- Source: {data['description']}; DFT functional {data['functional']}; licence {data['licence']}.",
        f"- File `{entry['source']['path']}` (under the project's real-data folder), "
        f"sha256 `{data['sha256']}`.",
        f"- {data['structures']} structures used, {data['left_out']} left out ({data['filters']}).",
        "- Targets: " + ", ".join(f"{t['name']} [{t['unit']}, {t['basis']}]" for t in entry["targets"]) + ".",
        "",
        "## Split and recipe",
        "",
        f"- One fixed split (seed {entry['split']['seed']}): test part {split['test']} structures "
        f"(never trained on), calibration part {split['calibration']} (fits the spread's scale), "
        f"pool {split['pool']}.",
        f"- {entry['members']} members, each with its own seed and its own draw of training "
        f"({split['member_train']}) and validation structures from the pool (best validation epoch kept).",
        f"- Model: `{entry['model']}`; training: `{entry['train']}`.",
        f"- Size: {size:.1f} MB in {len(entry['files'])} checkpoint files; built with aiida-cgcnn "
        f"{entry['package_version']} on {entry['built']}.",
        "",
        "## Test metrics (ensemble mean, test part)",
        "",
        *(
            [
                f"{entry['reduced_test_cells']} test cell(s) of the data are pseudo-symmetric: spglib "
                "(10⁻³ Å) finds a smaller primitive cell than the data kept, so their predictions are "
                "scaled to the data's cell before they are compared.",
                "",
            ]
            if entry.get("reduced_test_cells")
            else []
        ),
        *_metrics_table(entry),
        "",
        f"![parity plot]({'images/' + parity})",
        "",
        "## Calibration",
        "",
        "The uncertainty is the members' standard deviation times one scale factor per target, fitted on the "
        "calibration part so that 68.3 % of its errors fall within 1σ. Coverage on the test part:",
        "",
        *_calibration_table(entry),
        "",
        f"![calibration plot]({'images/' + calibration})",
        "",
        "## Errors by element and by cell size",
        "",
        *_element_table(entry),
        "",
        *_size_table(entry),
        "",
        "## Domain and limits",
        "",
        f"- Trained on {len(domain['elements'])} elements: {' '.join(domain['elements'])}.",
        f"- Cells of {domain['num_atoms'][0]} to {domain['num_atoms'][1]} atoms (basis cells). Structures "
        "outside either are still predicted, but flagged (`out_of_domain`) and warned about.",
        f"- {entry['limits']}",
        "",
        "## Rebuild",
        "",
        "<!-- snippet: skip rebuilds the shipped ensemble from the real data: up to an hour of training -->",
        "```bash",
        f"aiida-cgcnn pretrained build {name} --data ../shared/data -o pretrained/{name}",
        f"aiida-cgcnn pretrained card {name} -o docs/pretrained",
        "```",
        "",
    ]
    path = docs_dir / f"{name}.md"
    path.write_text("\n".join(lines))
    return path


def write_cards(docs_dir: str | os.PathLike, names: list[str] | None = None) -> list[Path]:
    """A card per shipped model (all by default)."""
    return [write_card(name, docs_dir) for name in (names or available())]
