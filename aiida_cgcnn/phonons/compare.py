"""Score predictions of U and Cv against phonon references: which model targets are U and Cv (and in
which units), the metrics of the hybridization paper (MAE, MAE/MAD), and a parity plot."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from .errors import PhononInputError

__all__ = [
    "PROPERTIES",
    "PhononTarget",
    "compare_values",
    "find_phonon_target",
    "parity_figure",
    "parity_plot_png",
]


#: The compared properties: key in reference records, unit, and the names a model's target may have.
class PhononProperty(TypedDict):
    key: str  # its key in a reference's or a prediction's values
    unit: str
    label: str  # for plots and tables
    names: tuple[str, ...]  # target names (lower case) a model may give it


PROPERTIES: dict[str, PhononProperty] = {
    "U": {
        "key": "U_kJmol",
        "unit": "kJ/mol",
        "label": "U (kJ/mol)",
        "names": ("u", "phonon_internal_energy", "internal_energy"),
    },
    "Cv": {
        "key": "Cv_JKmol",
        "unit": "J/(K mol)",
        "label": "Cv (J/(K·mol))",
        "names": ("cv", "heat_capacity", "phonon_heat_capacity"),
    },
}
# spellings of the units per mole of primitive cells, after _normalise_unit
_UNITS = {
    "U": {"kj/mol", "kjmol^-1", "kjmol-1", "kj/molcell", "kj/mol-cell"},
    "Cv": {
        "j/kmol",
        "j/molk",
        "j/k/mol",
        "j/mol/k",
        "jk^-1mol^-1",
        "jmol^-1k^-1",
        "j/molcellk",
        "j/kmolcell",
    },
}


@dataclass(frozen=True)
class PhononTarget:
    """Where a model keeps U or Cv: the target's column, name, unit and (if the name says) temperature."""

    property: str
    index: int
    name: str
    unit: str
    temperature_k: float | None


def _normalise_unit(unit: str) -> str:
    text = unit.lower().replace("·", "").replace("*", "").replace(" ", "").replace("(", "").replace(")", "")
    return text.replace("-cell", "cell")


def _match_name(name: str) -> tuple[str, float | None] | None:
    """``("U", 300.0)`` for ``U_300K``; ``("Cv", None)`` for ``Cv`` or ``heat_capacity``; else None."""
    key = re.sub(r"[^0-9a-zA-Z.]+", "_", name).strip("_").lower()
    match = re.fullmatch(r"(.+?)(?:_?(?:at_)?(\d+(?:\.\d+)?)_?k)?", key)
    if match is None:
        return None
    stem, temperature = match.group(1), match.group(2)
    for prop, spec in PROPERTIES.items():
        if stem in spec["names"]:
            return prop, None if temperature is None else float(temperature)
    return None


def find_phonon_target(
    prop: str,
    targets: Sequence[str],
    units: Sequence[str],
    model: str = "model",
    temperature_k: float | None = None,
) -> PhononTarget:
    """The target of a model that is ``prop`` (``"U"`` or ``"Cv"``), checked for units.

    Parameters
    ----------
    targets, units
        The model's target names and units (``ModelData.targets``/``.units``).
    model
        The model's name in messages.
    temperature_k
        With several temperatures (``U_300K``, ``U_600K``), the one wanted.

    Raises
    ------
    PhononInputError
        When the model has no such target, several candidates, or a unit that is not per mole of
        primitive cells in kJ/mol (U) or J/(K·mol) (Cv).
    """
    spec = PROPERTIES[prop]
    candidates = []
    for index, name in enumerate(targets):
        matched = _match_name(name)
        if matched is not None and matched[0] == prop:
            candidates.append((index, name, matched[1]))
    if temperature_k is not None and len(candidates) > 1:
        candidates = [c for c in candidates if c[2] is None or abs(c[2] - temperature_k) < 1e-6]
    if not candidates:
        raise PhononInputError(
            f"{model} has no {prop} target ({spec['label']}): it was trained on {list(targets)}"
        )
    if len(candidates) > 1:
        raise PhononInputError(
            f"{model} has several {prop} targets {[c[1] for c in candidates]}; "
            "give the temperature to choose one"
        )
    index, name, temperature = candidates[0]
    unit = str(units[index]) if index < len(units) else ""
    normalised = _normalise_unit(unit)
    if normalised not in _UNITS[prop]:
        per_atom = "atom" in normalised
        raise PhononInputError(
            f"{model}: target {name!r} has unit {unit!r}, but the phonon references give {prop} in "
            f"{spec['unit']} per mole of primitive cells"
            + (" (this model is per mole of atoms)" if per_atom else "")
        )
    return PhononTarget(prop, index, name, unit, temperature)


def compare_values(
    labels: Sequence[str], reference: Sequence[float], predicted: Sequence[float]
) -> dict[str, Any]:
    """MAE, MAD, MAE/MAD, RMSE and the largest error of ``predicted`` against ``reference``.

    MAD is the mean absolute deviation of the reference values from their mean, the hybridization
    paper's scale: MAE/MAD = 1 is no better than predicting the mean. ``per_structure`` holds each
    label's reference, prediction and signed error (predicted − reference).
    """
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    if ref.shape != pred.shape or ref.ndim != 1 or len(labels) != len(ref):
        raise ValueError("labels, reference and predicted must be three lists of the same length")
    if not len(ref):
        return {
            "n": 0,
            "mae": None,
            "mad": None,
            "mae_over_mad": None,
            "rmse": None,
            "max_abs_error": None,
            "max_error_structure": None,
            "per_structure": {},
        }
    error = pred - ref
    mae = float(np.abs(error).mean())
    mad = float(np.abs(ref - ref.mean()).mean())
    worst = int(np.abs(error).argmax())
    return {
        "n": len(ref),
        "mae": mae,
        "mad": mad,
        "mae_over_mad": mae / mad if mad > 0 else None,
        "rmse": float(np.sqrt((error**2).mean())),
        "max_abs_error": float(abs(error[worst])),
        "max_error_structure": str(labels[worst]),
        "per_structure": {
            str(label): {"reference": float(r), "predicted": float(p), "error": float(e)}
            for label, r, p, e in zip(labels, ref, pred, error, strict=True)
        },
    }


def parity_figure(
    panels: Mapping[str, Mapping[str, Any]], title: str = "", excluded: Mapping[str, str] | None = None
):
    """The parity plot (predicted against reference) as a matplotlib ``Figure``, one panel per property.

    ``panels[prop]`` holds ``reference``, ``predicted`` (lists), and optionally ``labels`` (one per
    point, written beside it), ``mae`` and ``mae_over_mad`` for the legend (the MAE in the unit of
    :data:`PROPERTIES`). ``excluded`` (label -> reason) is listed under the panels, so that a reader
    sees which crystals are missing and why.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    excluded = dict(excluded or {})
    names = [p for p in panels if panels[p].get("reference")]
    height = 4.4 + 0.22 * len(excluded)
    figure = Figure(figsize=(4.6 * max(len(names), 1), height), dpi=110)
    axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
    for ax, prop in zip(axes, names, strict=False):
        ref = np.asarray(panels[prop]["reference"], dtype=float)
        pred = np.asarray(panels[prop]["predicted"], dtype=float)
        low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.08 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", lw=1, zorder=0)
        ax.scatter(ref, pred, s=18, alpha=0.8)
        for label, x, y in zip(panels[prop].get("labels") or [], ref, pred, strict=False):
            ax.annotate(str(label), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
        spec = PROPERTIES.get(prop)
        label, unit = (spec["label"], spec["unit"]) if spec else (prop, "")
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        mae, ratio = panels[prop].get("mae"), panels[prop].get("mae_over_mad")
        if mae is not None:
            text = (
                f"MAE {mae:.3g} {unit}".rstrip()
                + (f"\nMAE/MAD {ratio:.3f}" if ratio is not None else "")
                + f"\nn = {len(ref)}"
            )
            ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", fontsize=9)
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.set_aspect("equal")
    if not names:
        axes[0].text(0.5, 0.5, "no structure compared", ha="center", va="center")
        axes[0].set_axis_off()
    if title:
        figure.suptitle(title)
    bottom = 0.0
    if excluded:
        lines = [f"left out {label}: {_short(reason)}" for label, reason in sorted(excluded.items())]
        bottom = min(0.45, (0.3 + 0.22 * len(lines)) / height)
        figure.text(0.02, 0.01, "\n".join(lines), fontsize=7.5, va="bottom", ha="left")
    figure.tight_layout(rect=(0, bottom, 1, 1))
    return figure


def _short(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def parity_plot_png(
    panels: Mapping[str, Mapping[str, Any]], title: str = "", excluded: Mapping[str, str] | None = None
) -> bytes:
    """:func:`parity_figure` as PNG bytes."""
    figure = parity_figure(panels, title, excluded)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
