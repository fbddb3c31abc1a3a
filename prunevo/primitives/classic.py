"""The classic criteria, each written as a formula of the grammar.

The hand-made criteria of the pruning literature, the activation-aware one-shot metric of Wanda, and the
seed paper's own evolved function.  They seed the first population of every evolution run and are the
baselines of every report.  ``random`` is a baseline outside the grammar (see ``prunevo.pruning.criteria``).
"""
from __future__ import annotations

from prunevo.primitives.formula import Formula

# Liu, Kung & Wentzlaff, "Evolving Transferable Pruning Functions" (GECCO 2022), the seed paper: its evolved
# function GA_Func2 (Equation 3; Transfer_Pruning/Util/GA_Discriminant_Function.py in the authors' code).
# For class k, P are the feature maps of the samples of class k and Q those of every other class; with
# p = var(P), q = var(Q), u = mean(Q) (over samples and positions), m the channel's mean map (one value per
# position d, over all samples) and s = std(m) over the positions, the channel's score is
#     sum_k sum_d [ p/(q+0.05) + q/(p+0.05) + (s*q*m_d + p - u)^2 / (p+q+0.05) ].
# Summing the square over the D positions gives D * [(s*s*q)^2 + (s*mean(F)*q + p - u)^2] (as
# mean_d(m) = mean(F) and mean_d(m^2) = s^2 + mean(F)^2), so the formula below is GA_Func2 / D exactly.  D is
# the same for every channel of a layer and of a group (coupled layers add maps of one shape), so the
# ranking within a layer, and every layer-wise allocation, is the paper's; only global ranking across layers of
# different resolutions would see the factor.  (tests/test_classic.py checks it against a direct NumPy computation.)
GECCO22_TEXT = ("l1(cvar(F) / (rvar(F) + 0.05) + rvar(F) / (cvar(F) + 0.05) + (square(std(nmean(F)) * "
                "std(nmean(F)) * rvar(F)) + square(std(nmean(F)) * mean(F) * rvar(F) + cvar(F) - rmean(F))) / "
                "(cvar(F) + rvar(F) + 0.05))")

CLASSIC_TEXT: dict[str, str] = {
    "l1": "l1(W)",  # Li et al. 2017, filter L1 norm
    "l2": "l2(W)",
    "bn": "abs(gamma)",  # Liu et al. 2017, network slimming
    "taylor": "abs(mean(F * G))",  # Molchanov et al. 2017, first-order Taylor
    "apoz": "-sparsity(F)",  # Hu et al. 2016, average percentage of zeros (fewer zeros = keep)
    "activation": "mean(F)",  # mean activation
    "snr": "var(cmean(F)) / (mean(cvar(F)) + 0.05)",  # Fisher-type: between- over within-class variance
    "fpgm": "fpgm(W)",  # He et al. 2019, distance from the geometric median
    # Sun et al. 2024 (Wanda, "A Simple and Effective Pruning Approach for LLMs"): a weight's magnitude times
    # the norm of the input activation it multiplies.  Removing channel c removes the consumers' weights that
    # read it (Wn) and its feature map (F), so the channel sums |Wn| * ||F||: l1(Wn) * l2(F)
    "wanda": "l1(Wn) * l2(F)",
    "gecco22": GECCO22_TEXT,
    # for the regime with reconstruction (the readers of removed channels refitted by least squares,
    # pruning.reconstruct): a channel's leave-one-out error, what the other channels cannot predict of its maps
    # (ThiNet; Neuron Merging), and the structured Optimal Brain Surgeon saliency of its readers (ZipLM, Kurtic et
    # al. 2023; OBC, Frantar & Alistarh 2022): removing input c of a layer y = Wx refitted on H = XᵀX costs
    # ||W_c||^2 / [H^-1]_cc, with X the channels' maps (the 1x1 form for k x k readers), and 1 / [H^-1]_cc = loo
    "loo": "loo(F)",
    "obs": "square(l2(Wn)) * loo(F)",
}


# what each criterion is, and where it comes from (``prunevo criteria`` prints it)
CLASSIC_NOTES: dict[str, str] = {
    "l1": "filter L1 norm (Li et al., ICLR 2017)",
    "l2": "filter L2 norm",
    "bn": "BatchNorm scale (Liu et al., network slimming, ICCV 2017)",
    "taylor": "first-order Taylor expansion of the loss on activations (Molchanov et al., ICLR 2017)",
    "apoz": "average percentage of zeros (Hu et al., 2016): fewer zeros = keep",
    "activation": "mean activation",
    "snr": "Fisher-type class separability: between-class over within-class variance",
    "fpgm": "distance from the geometric median of the layer's filters (He et al., CVPR 2019)",
    "wanda": "Wanda (Sun et al., ICLR 2024): the weights that read the channel times its activation norm, the "
             "strongest simple one-shot metric for LLMs",
    "loo": "leave-one-out reconstruction error: what the other channels' feature maps cannot predict of this "
           "one by least squares, 1/[(FFᵀ)⁻¹]_cc per position (ThiNet, Luo et al. ICCV 2017; Neuron Merging, Kim "
           "et al. NeurIPS 2020); for pruning with --reconstruct",
    "obs": "structured Optimal Brain Surgeon saliency of the layers that read the channel, ||Wn_c||² / [(XᵀX)⁻¹]_cc "
           "with X the channels' feature maps (ZipLM, Kurtic et al. NeurIPS 2023; OBC, Frantar & Alistarh NeurIPS "
           "2022): the output error their refit cannot remove; for pruning with --reconstruct",
    "gecco22": "the seed paper's evolved function (Liu, Kung & Wentzlaff, GECCO 2022, Eq. 3, GA_Func2 of the "
               "authors' code): class-vs-rest variance ratios and a mean-map term summed over classes; equal to "
               "the paper's up to the per-layer factor of spatial positions",
}


def classic_formulas() -> dict[str, Formula]:
    return {name: Formula.parse(text, name=name) for name, text in CLASSIC_TEXT.items()}


def classic_formula(name: str) -> Formula:
    return Formula.parse(CLASSIC_TEXT[name], name=name)
