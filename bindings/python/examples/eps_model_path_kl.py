"""The exact path KL of an epsilon-prediction model's DDPM chain (here the exact eps, slightly
biased, standing in for a network) on diffusers' cosine schedule."""
import numpy as np
import covlab
from covlab import kernels

mix = covlab.Mixture.preset("mog40")
sch = covlab.Schedule.diffusers("squaredcos_cap_v2", timestep_spacing="trailing")


def eps_model(x_t, abar_t):                       # your network here: (n, D) -> (n, D)
    return -np.sqrt(1 - abar_t) * mix.score(x_t, abar_t) + 0.01


for variance in ["beta", kernels.exact(mix, "diag")]:
    if callable(variance):
        name, var = "diag C", lambda x, s, t: kernels.exact(mix, "diag")(x, s, t)[1]
    else:
        name, var = variance, variance
    for T in [10, 50]:
        r = covlab.path_kl_model(mix, sch, T, kernels.from_eps(eps_model, var))
        print(f"{name:6s} T={T:3d}: path KL {r['path_kl']['value']:.4g} +- {r['path_kl']['err']:.1g} "
              f"(S_full {r['s_full']['value']:.3g}, mean {r['mean_part']['value']:.3g}, cov {r['cov_part']['value']:.3g})")
