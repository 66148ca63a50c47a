"""Validate a numpy DDPM sampler against exact draws of a Gaussian mixture."""
import numpy as np
import covlab

mix = covlab.Mixture.preset("grid9")
sch = covlab.Schedule.diffusers("linear", timestep_spacing="trailing")
for T, cov in [(1000, "full"), (10, "beta")]:
    g, rng = sch.grid(T), np.random.default_rng(0)
    x = rng.standard_normal((2000, mix.dim))
    for i in range(T, 0, -1):                       # x_{t_i} -> x_{t_{i-1}}
        mean, c = covlab.posterior(mix, x, g[i - 1], g[i])   # the exact reverse moments
        if cov == "beta":
            c = (1 - g[i] / g[i - 1]) * np.eye(mix.dim)[None]
        x = mean + np.einsum("nij,nj->ni", np.linalg.cholesky(c + 1e-300), rng.standard_normal(x.shape))
    r = covlab.metrics.check_samples(mix, x, seed=1)
    print(f"T={T:5d} {cov:5s}: MMD^2 = {r['mmd2']['mmd2']:.2e} (z = {r['mmd2_z']:.1f}), "
          f"log-lik {r['log_likelihood']['value']:.3f} vs exact {r['reference_log_likelihood']['value']:.3f}")
