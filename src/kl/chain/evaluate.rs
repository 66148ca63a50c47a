//! The entry of a chain evaluation: per method and `T`,
//! ```text
//! path_kl(T) = S_full(T) + sum_steps E_{q_t}[mean part] + sum_steps E_{q_t}[cov part],
//! cov part = E[cov_ref] (reference pass) + E[cov - cov_ref] (network pass),
//! ```
//! with `S_full` from [`crate::kl::path_kl::path_kl_sweep`] and `+inf` for a degenerate kernel.

use super::curves::curves;
use super::nodes::{Needs, Networks};
use super::pass::{run_pass, Acc, Pass, UseSpec};
use super::{ChainError, EvalParams, EvalReport, EvalRow, EvalRule, HeadKind, Method};
use crate::data::mixture::Mixture;
use crate::kernel::family::Family;
use crate::kernel::model::KernelKind;
use crate::kl::path_kl::{path_kl_sweep, PathKlParams, RuleChoice};
use crate::process::schedule::Grid;
use crate::quadrature::Estimate;

/// Computes the path-KL rows, the covariance errors and (for a learned score) the Jacobian
/// asymmetry of the model chains `params.methods` with the mean of the learned score of `nets` (exact
/// without one), on the data `q0`.
///
/// Two passes over the grid times: the *reference* pass computes, without any network, the
/// covariance part of each method's network-free reference (the method itself for the fixed
/// and exact families, `diag` for the diagonal network methods, `full` for the Jacobian ones)
/// on the lattice (D <= 2; QMC beyond); the *network* pass computes, for the methods with a
/// network, the mean part and the difference of covariance parts to the reference on
/// [`EvalParams::rule`] (randomised QMC by default: a control variate, so the QMC error is that
/// of a small difference). Methods without a network are exact to the lattice's accuracy.
///
/// # Arguments
/// * `q0` - the data mixture.
/// * `nets` - the learned score and heads the methods need ([`NoNetworks`](super::NoNetworks): none).
/// * `params` - schedule, T values, methods, rules.
/// * `progress` - called with (done, total) over the grid times of both passes.
///
/// # Errors
/// A method whose model is missing; path-KL, schedule and the networks' errors.
pub fn evaluate_chains(
    q0: &Mixture,
    nets: &dyn Networks,
    params: &EvalParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport, ChainError> {
    let d = q0.dim();
    let learned = nets.learned();
    for m in &params.methods {
        if let Method::Head(k) = m {
            if !nets.head_kinds().contains(k) {
                return Err(ChainError::UnknownMethod(format!(
                    "{} (no head loaded)",
                    k.name()
                )));
            }
        }
        if m.is_jacobian_full() && !learned {
            return Err(ChainError::InvalidParameter {
                field: "methods",
                reason: format!(
                    "{} needs a learned score (the exact Hessian is symmetric: use full)",
                    m.name()
                ),
            });
        }
    }
    let ddim = params.kernel == KernelKind::Ddim;
    if ddim {
        if let Some(m) = params.methods.iter().find(|m| {
            matches!(
                m,
                Method::Family(Family::Beta | Family::BetaTilde) | Method::Head(HeadKind::Iddpm)
            )
        }) {
            return Err(ChainError::InvalidParameter {
                field: "methods",
                reason: format!(
                    "{} has no OCM-DDIM covariance (beta, beta-tilde: Sigma_0 = 0, plain DDIM, infinite KL; iddpm: beta~ = 0 at every step to the data)",
                    m.name()
                ),
            });
        }
        if params.early_stop != 0.0 {
            return Err(ChainError::InvalidParameter {
                field: "early_stop",
                reason: "must be 0 with the DDIM kernel (its x_0 is the data at t = 0)".into(),
            });
        }
    }
    if params.steps.is_empty() || params.steps.contains(&0) {
        return Err(ChainError::InvalidParameter {
            field: "steps",
            reason: "give T values >= 1".into(),
        });
    }
    let needs = Needs {
        jac: learned
            && params
                .methods
                .iter()
                .any(|m| matches!(m, Method::Hutchinson(_)) || m.is_jacobian_full()),
    };
    // S_full from the path-KL core, on the same lattice.
    let pk = path_kl_sweep(
        q0,
        &params.schedule,
        &params.steps,
        &PathKlParams {
            families: vec![Family::Full],
            rule: RuleChoice::Auto,
            lattice: params.lattice,
            qmc: params.qmc,
            early_stop: params.early_stop,
            kernel: params.kernel,
            ..PathKlParams::default()
        },
        &|_, _| {},
    )?;
    let grids: Vec<Grid> = params
        .steps
        .iter()
        .map(|&t| params.schedule.grid(t, params.early_stop))
        .collect::<Result<_, _>>()?;
    // Tasks: one per distinct grid time t > 0, with the steps ending there.
    let mut tasks: std::collections::BTreeMap<u64, (f64, Vec<UseSpec>)> = Default::default();
    for (g, grid) in grids.iter().enumerate() {
        for i in 1..=grid.steps() {
            // DDIM: the one jump (t_0, t_i) (no beta-tilde: refused above).
            let step = if ddim { grid.jump(i) } else { grid.step(i) };
            let bt_clip =
                (!ddim && grid.one_minus_abar(i - 1) <= 0.0 && grid.steps() >= 2).then(|| {
                    let next = grid.step(i + 1);
                    next.b * grid.one_minus_abar(i) / grid.one_minus_abar(i + 1)
                });
            let l = grid.ln_abar[i];
            tasks
                .entry((-l).to_bits())
                .or_insert((l, Vec::new()))
                .1
                .push(UseSpec {
                    grid: g,
                    step,
                    bt_clip,
                });
        }
    }
    let tasks: Vec<(f64, Vec<UseSpec>)> = tasks.into_values().collect();
    let t_max = params.steps.iter().copied().max().unwrap_or(1);
    let nodes_for = |uses: &[UseSpec]| {
        let t_min = uses
            .iter()
            .map(|u| grids[u.grid].steps())
            .min()
            .unwrap_or(t_max)
            .max(1);
        params.qmc_nodes * t_max.div_ceil(t_min).clamp(1, 32)
    };
    let any_network = params.methods.iter().any(|m| m.uses_network(learned));
    let total = tasks.len() * if any_network { 2 } else { 1 };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let tick = || {
        progress(
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            total,
        )
    };
    // The reference pass: lattice in D <= 2, QMC (params.qmc) beyond.
    let ref_params = EvalParams {
        rule: if d <= 2 {
            EvalRule::Lattice
        } else {
            EvalRule::Qmc
        },
        qmc_nodes: params.qmc.points * q0.len() * params.qmc.shifts.max(2),
        ..params.clone()
    };
    let ref_nodes = |_: &[UseSpec]| ref_params.qmc_nodes;
    let (ref_sums, ref_model, _) = run_pass(
        q0,
        &tasks,
        grids.len(),
        params,
        &ref_params,
        nets,
        Pass::Reference,
        &ref_nodes,
        needs,
        &tick,
    )?;
    let net = if any_network {
        Some(run_pass(
            q0,
            &tasks,
            grids.len(),
            params,
            params,
            nets,
            Pass::Network,
            &nodes_for,
            needs,
            &tick,
        )?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for (mi, method) in params.methods.iter().enumerate() {
        for (g, grid) in grids.iter().enumerate() {
            let t = grid.steps();
            let s_full = pk
                .get(Family::Full, t)
                .map(|r| r.s)
                .ok_or(crate::kl::path_kl::PathKlError::NoSteps)?;
            let ra = &ref_sums[g][mi];
            let cov_ref = ref_model.combine(&Acc::values(&ra.cov));
            let mut infinite = ra.infinite;
            let (mean_part, cov_part, extra_err) = match &net {
                Some((sums, model, _)) if method.uses_network(learned) => {
                    let a = &sums[g][mi];
                    infinite |= a.infinite;
                    let mean = Acc::values(&a.mean);
                    let covd = Acc::values(&a.cov);
                    let both: Vec<f64> = mean.iter().zip(&covd).map(|(m, c)| m + c).collect();
                    let cd = model.combine(&covd);
                    (
                        model.combine(&mean),
                        Estimate {
                            value: cov_ref.value + cd.value,
                            err: cov_ref.err + cd.err,
                        },
                        // The error of mean + covariance difference, estimated jointly.
                        cov_ref.err + model.combine(&both).err,
                    )
                }
                _ => (
                    Estimate {
                        value: 0.0,
                        err: 0.0,
                    },
                    cov_ref,
                    cov_ref.err,
                ),
            };
            let inf = Estimate {
                value: f64::INFINITY,
                err: 0.0,
            };
            rows.push(EvalRow {
                method: method.name(),
                steps: t,
                path_kl: if infinite {
                    inf
                } else {
                    Estimate {
                        value: s_full.value + mean_part.value + cov_part.value,
                        err: s_full.err + extra_err,
                    }
                },
                mean_part,
                cov_part: if infinite { inf } else { cov_part },
                s_full,
            });
        }
    }
    let (cov_error, j_asymmetry) = if ddim {
        (Vec::new(), Vec::new())
    } else {
        curves(q0, nets, params, needs)?
    };
    let net_rule = match params.rule {
        EvalRule::Lattice => format!("lattice (h = {} x smallest sd)", params.lattice.h_frac),
        EvalRule::Qmc => format!(
            "randomised QMC ({}..{} nodes per time, {} shifts, err = 2 s.e.)",
            params.qmc_nodes,
            32 * params.qmc_nodes,
            params.qmc.shifts
        ),
    };
    let rule = format!(
        "S_full: {}; network-free covariance parts: {}; network terms (control variate against diag/full): {net_rule}",
        pk.rule,
        if d <= 2 {
            format!("lattice (h = {} x smallest sd, nested h/2h/4h)", params.lattice.h_frac)
        } else {
            "QMC".to_string()
        }
    );
    Ok(EvalReport {
        rows,
        cov_error,
        j_asymmetry,
        terminal_kl: pk.terminal_kl,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kl::chain::{HeadKind, NetOutputs, NoNetworks};
    use crate::process::schedule::Schedule;

    fn params(methods: &str) -> EvalParams {
        EvalParams {
            schedule: Schedule::vp_linear(),
            steps: vec![2, 4],
            methods: Method::parse_list(methods).unwrap(),
            qmc_nodes: 64,
            curve_times: 2,
            curve_grid: 8,
            ..EvalParams::default()
        }
    }

    /// A "learned" score that is the exact one, computed per row from the marginal.
    struct ExactScoreNet<'a>(&'a Mixture);

    impl Networks for ExactScoreNet<'_> {
        fn learned(&self) -> bool {
            true
        }
        fn head_kinds(&self) -> Vec<HeadKind> {
            Vec::new()
        }
        fn evaluate(
            &self,
            x: &[f64],
            d: usize,
            ln_abar: &[f64],
            jacobian: bool,
        ) -> Result<NetOutputs, ChainError> {
            let mut out = NetOutputs::default();
            for (k, &l) in ln_abar.iter().enumerate() {
                let q = self.0.marginal(l)?;
                let xk = &x[k * d..(k + 1) * d];
                out.score.extend(q.score(xk)?.iter());
                if jacobian {
                    out.jacobian.extend(q.hessian(xk)?.iter());
                }
            }
            Ok(out)
        }
    }

    #[test]
    fn exact_chain_full_is_s_full_and_diag_is_above() {
        let q0 = crate::data::presets::load("aniso2").unwrap();
        let r = evaluate_chains(&q0, &NoNetworks, &params("full,diag"), &|_, _| {}).unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in &r.rows {
            assert_eq!(row.mean_part.value, 0.0, "{row:?}");
            assert!(row.s_full.value.is_finite() && row.s_full.value > 0.0);
            if row.method == "full" {
                assert!(row.cov_part.value.abs() < 1e-12, "{row:?}");
                assert!(
                    (row.path_kl.value - row.s_full.value).abs() < 1e-12,
                    "{row:?}"
                );
            } else {
                assert!(row.cov_part.value > 0.0, "{row:?}");
            }
        }
        assert!(r.j_asymmetry.is_empty());
        assert!(r.cov_error.is_empty()); // full and diag are not diagonal-error methods
    }

    #[test]
    fn exact_score_behind_the_seam_has_no_mean_part() {
        let q0 = crate::data::presets::load("aniso2").unwrap();
        let p = params("full,diag,full-sym,hutchinson-2");
        let r = evaluate_chains(&q0, &ExactScoreNet(&q0), &p, &|_, _| {}).unwrap();
        let exact = evaluate_chains(&q0, &NoNetworks, &params("full,diag"), &|_, _| {}).unwrap();
        for row in &r.rows {
            assert!(row.mean_part.value.abs() < 1e-10, "{row:?}");
            if row.method == "full-sym" {
                // J = H: the symmetrised Jacobian is the exact full covariance (clamped).
                let full = exact
                    .rows
                    .iter()
                    .find(|e| e.method == "full" && e.steps == row.steps);
                let full = full.unwrap();
                assert!(
                    (row.path_kl.value - full.path_kl.value).abs()
                        <= 1e-9 + row.path_kl.err + full.path_kl.err,
                    "{row:?} vs {full:?}"
                );
            }
        }
        // The Jacobian asymmetry of a symmetric J = H is zero.
        assert!(!r.j_asymmetry.is_empty());
        for a in &r.j_asymmetry {
            assert!(
                a.rms_ratio.abs() < 1e-12 && a.rel_err_vs_h.abs() < 1e-12,
                "{a:?}"
            );
        }
    }

    #[test]
    fn missing_heads_and_jacobian_methods_are_refused() {
        let q0 = crate::data::presets::load("aniso2").unwrap();
        let e = evaluate_chains(&q0, &NoNetworks, &params("ocm"), &|_, _| {}).unwrap_err();
        assert_eq!(
            e.to_string(),
            ChainError::UnknownMethod("ocm (no head loaded)".into()).to_string()
        );
        let e = evaluate_chains(&q0, &NoNetworks, &params("full-jt"), &|_, _| {}).unwrap_err();
        assert!(matches!(
            e,
            ChainError::InvalidParameter {
                field: "methods",
                ..
            }
        ));
    }
}
