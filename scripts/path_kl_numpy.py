#!/usr/bin/env python3
"""A plain vectorised numpy implementation of covlab's route A, for speed comparisons and as
an independent second implementation of the path KL.

What it does, for a mixture with K components in D <= 3 and the nested grids of a schedule:

- At every grid time t it builds q_t (means sqrt(abar) mu_k, covariances
  abar Sigma_k + (1 - abar) I) and ONE trapezoid lattice of the same kind as covlab's finest
  level: spacing h = 0.175 x the smallest component standard deviation of q_t, a box reaching
  10 largest standard deviations beyond the extreme means. No nested 2h/4h levels, so no error
  estimate, and no pruning: every node and every component is evaluated, as arrays of shape
  (nodes, K, D), with numpy's logsumexp-style responsibilities, the centred Hessian
  H = sum_k r_k (g_k - s)(g_k - s)^T - sum_k r_k B_k^-1 and its eigenvalues by eigvalsh.
- Route A (docs/path-kl.md): S_full(T) = sum_steps E_{q_t}[(1/2) sum_i ln(1 + b mu_i)]
  + (D/2) ln(abar_0 / abar_T) + H(q_T) - H(q_0), and each family's offset
  E[KL(N(m, C) || N(m, Sigma_fam))] in closed form: beta, beta-tilde (clipped first step),
  analytic (1 - rho = -b E[tr H] / D), diag (-(1/2) ln det of the correlation of I + b H).
- It prints S for every family and T, the wall time, and, given covlab's path-kl binary, the
  wall time of `path-kl` on the same sweep and the largest relative difference between the two
  implementations.

Usage (from the repository root, with covlab's Python package installed, e.g. the CI venv):

    cargo build --release --bin path-kl
    target/ci-venv/bin/python scripts/path_kl_numpy.py --data mog40 --steps 8,16,32,64

The grids (times and abar) come from `path-kl --print-grid`, so both implementations use the
same schedule arithmetic; the mixture comes from `covlab.Mixture.preset`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import covlab

H_FRAC = 0.175
EXTENT = 10.0


def lattice(means, covs):
    """The single-level trapezoid lattice over q_t: nodes (N, D) and the weight h^D."""
    eig = np.linalg.eigvalsh(covs)
    h = H_FRAC * np.sqrt(eig.min())
    reach = EXTENT * np.sqrt(eig.max())
    lo, hi = means.min(axis=0) - reach, means.max(axis=0) + reach
    axes = []
    for i in range(means.shape[1]):
        centre = 0.5 * (lo[i] + hi[i])
        half = int(np.ceil(0.5 * (hi[i] - lo[i]) / h))
        axes.append(centre + h * np.arange(-half, half + 1))
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1), h ** means.shape[1]


def geometry(x, w, means, covs):
    """ln q, the Hessian (N, D, D) and its eigenvalues (N, D) at the nodes."""
    d = x.shape[1]
    prec = np.linalg.inv(covs)  # (K, D, D)
    _, logdet = np.linalg.slogdet(covs)
    diff = x[:, None, :] - means[None, :, :]  # (N, K, D)
    g = -np.einsum("kij,nkj->nki", prec, diff)  # grad ln N_k
    quad = -np.einsum("nki,nki->nk", diff, g)
    terms = np.log(w)[None, :] - 0.5 * (d * np.log(2 * np.pi) + logdet)[None, :] - 0.5 * quad
    top = terms.max(axis=1, keepdims=True)
    lnq = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
    r = np.exp(terms - lnq[:, None])  # (N, K)
    s = np.einsum("nk,nki->ni", r, g)
    c = g - s[:, None, :]
    hess = np.einsum("nk,nki,nkj->nij", r, c, c) - np.einsum("nk,kij->nij", r, prec)
    return lnq, hess, np.linalg.eigvalsh(hess)


def half_u_minus_ln1p(rho, omr, b, mu):
    """(1/2) sum_i (u_i - ln(1 + u_i)), u_i = ((1 - rho) + b mu_i) / rho, per node."""
    u = (omr + b * mu) / rho
    return 0.5 * (u - np.log1p(u)).sum(axis=1)


def diag_offset(b, hess):
    """-(1/2) ln det R, R the correlation matrix of I + b H, per node."""
    d = hess.shape[1]
    m = np.eye(d)[None] + b * hess
    dg = np.sqrt(np.einsum("nii->ni", m))
    corr = m / (dg[:, :, None] * dg[:, None, :])
    return -0.5 * np.linalg.slogdet(corr)[1]


def run(mix, grids):
    w, mu0, sig0 = mix.weights, mix.means, mix.covariances
    d = mu0.shape[1]
    times = sorted({a for g in grids for a in g["abar"]}, reverse=True)
    cache = {}
    for abar in times:
        means = np.sqrt(abar) * mu0
        covs = abar * sig0 + (1 - abar) * np.eye(d)[None]
        x, hd = lattice(means, covs)
        lnq, hess, mu = geometry(x, w, means, covs)
        wq = np.exp(lnq) * hd
        cache[abar] = dict(wq=wq, lnq=lnq, hess=hess, mu=mu,
                           entropy=-(wq * lnq).sum(),
                           trace=(wq * np.einsum("nii->n", hess)).sum())
    out = {}
    for g in grids:
        abar = g["abar"]
        steps = len(abar) - 1
        full = 0.0
        offs = {"beta": 0.0, "beta-tilde": 0.0, "analytic": 0.0, "diag": 0.0}
        for i in range(1, steps + 1):
            s_, t_ = abar[i - 1], abar[i]
            a2, b = t_ / s_, 1 - t_ / s_
            c = cache[t_]
            e = lambda v: (c["wq"] * v).sum()
            full += e(0.5 * np.log1p(b * c["mu"]).sum(axis=1))
            offs["beta"] += e(half_u_minus_ln1p(a2, b, b, c["mu"]))
            if 1 - s_ > 0:
                rho, omr = a2 * (1 - s_) / (1 - t_), b / (1 - t_)
            else:  # clip: borrow the next step's beta-tilde variance
                b_next = 1 - abar[i + 1] / t_
                sigma2 = b_next * (1 - t_) / (1 - abar[i + 1])
                rho = a2 * sigma2 / b
                omr = 1 - rho
            offs["beta-tilde"] += e(half_u_minus_ln1p(rho, omr, b, c["mu"]))
            omr = -b * c["trace"] / d
            offs["analytic"] += e(half_u_minus_ln1p(1 - omr, omr, b, c["mu"]))
            offs["diag"] += e(diag_offset(b, c["hess"]))
        s_full = (full + 0.5 * d * np.log(abar[0] / abar[-1])
                  + cache[abar[-1]]["entropy"] - cache[abar[0]]["entropy"])
        out[steps] = {f: s_full + v for f, v in offs.items()} | {"full": s_full}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="mog40")
    ap.add_argument("--steps", default="8,16,32,64")
    ap.add_argument("--bin", default="target/release/path-kl", help="covlab's path-kl binary")
    ap.add_argument("--threads", default="2", help="path-kl --threads for the timing")
    a = ap.parse_args()
    grid_doc = json.loads(subprocess.run(
        [a.bin, "--data", a.data, "--steps", a.steps, "--print-grid"],
        check=True, capture_output=True, text=True).stdout)
    grids = grid_doc["grids"]
    mix = covlab.Mixture.preset(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([a.bin, "--data", a.data, "--steps", a.steps, "--threads", a.threads,
                        "--json", os.path.join(tmp, "pk.json"), "--figure", os.path.join(tmp, "pk")],
                       check=True, capture_output=True)
        t_covlab = time.perf_counter() - t0
        ref = json.load(open(os.path.join(tmp, "pk.json")))
    t0 = time.perf_counter()
    res = run(mix, grids)
    t_numpy = time.perf_counter() - t0
    worst = 0.0
    for row in ref["results"]:
        v = res[row["T"]][row["family"]]
        rel = abs(v - row["S"]) / abs(row["S"])
        worst = max(worst, rel)
        print(f"{row['family']:>10} T = {row['T']:>4}: numpy {v:.12e}  covlab {row['S']:.12e} "
              f"(err {row['err']:.1e})  rel diff {rel:.1e}")
    print(f"numpy route A (one level, no error estimate): {t_numpy:.2f} s")
    print(f"covlab path-kl --threads {a.threads} (three nested levels, error estimates, figure): "
          f"{t_covlab:.2f} s")
    print(f"ratio numpy / covlab: {t_numpy / t_covlab:.1f}x; largest relative difference {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
