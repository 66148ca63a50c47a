//! The `path-kl` study's text table and log-log figure of the step sums S_fam(T) against T,
//! with the fitted slopes of ln S on ln T and the reference slopes (-1, -2; +1 for DDIM).

use crate::plot::{Plot, RefSlope, Series, XScale};
use crate::process::schedule::Schedule;
use crate::stats::rates::SlopeFit;
use crate::study::RunInfo;

use super::{Cell, PathKlStudy, Row};
use crate::kernel::family::Family;
use crate::kl::local_error::term_order;

impl PathKlStudy {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn table(
        &self,
        cells: &[Cell],
        names: &[String],
        n_core: usize,
        series: &[Vec<(usize, Row)>],
        fits: &[Result<SlopeFit, String>],
        last_step: &str,
        info: &RunInfo,
    ) -> String {
        let first = &cells[0];
        let route = if self.route == "b" { "B" } else { "A" };
        let mut s = format!(
            "path KL step sums S(T) for {} (D = {}), schedule {}, {} kernel, route {route}, rule: {}\n",
            self.data, first.dim, self.schedule, self.kernel, first.rule
        );
        if names.iter().any(|n| n == "beta-tilde") {
            s += &format!("beta-tilde last step: {last_step}\n");
        }
        let mut header = format!("{:>6}", "T");
        for f in &names[..n_core] {
            header += &format!(" | {:>14} {:>8}", format!("S_{f}"), "err");
        }
        s += &header;
        s.push('\n');
        for c in cells {
            let mut line = format!("{:>6}", c.t);
            for f in &names[..n_core] {
                match c.rows.iter().find(|r| &r.family == f) {
                    Some(r) => line += &format!(" | {:>14.8e} {:>8.1e}", r.s, r.err),
                    None => line += &format!(" | {:>14} {:>8}", "-", "-"),
                }
            }
            s += &line;
            s.push('\n');
        }
        s += &format!(
            "terminal KL(q_T || N(0, I)) = {:.10e} +- {:.1e} (independent of the family and of T)\n",
            first.terminal_kl.value, first.terminal_kl.err
        );
        s += "slopes of ln S on ln T (least squares, 95 % interval):\n";
        for (f, fit) in names[..n_core].iter().zip(fits) {
            match fit {
                Ok(v) => {
                    s += &format!(
                        "  {:>10}: {:+.4} [{:+.4}, {:+.4}] on T in [{}, {}]\n",
                        f, v.slope, v.ci95[0], v.ci95[1], v.window[0], v.window[1]
                    )
                }
                Err(e) => s += &format!("  {f:>10}: no fit ({e})\n"),
            }
        }
        s += &format!(
            "wall time {:.2} s on {} threads\n",
            info.wall_time_s, info.threads
        );
        for ((name, rows), fit) in names.iter().zip(series).zip(fits).skip(n_core) {
            s +=
                &format!("{name} (expected over probes; err = Monte Carlo 2 s.e. + quadrature):\n");
            for (t, r) in rows {
                s += &format!("  T = {t:>5}: S = {:.8e} +- {:.1e}\n", r.s, r.err);
            }
            match fit {
                Ok(f) => {
                    s += &format!(
                        "  slope {:+.4} [{:+.4}, {:+.4}]\n",
                        f.slope, f.ci95[0], f.ci95[1]
                    )
                }
                Err(e) => s += &format!("  no fit ({e})\n"),
            }
        }
        s
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn figure(
        &self,
        label: &str,
        schedule: &Schedule,
        names: &[String],
        n_core: usize,
        series: &[Vec<(usize, Row)>],
        fits: &[Result<SlopeFit, String>],
        first: &Cell,
        last_step: &str,
        early_stop: f64,
    ) -> Plot {
        let xs = |rows: &[(usize, Row)]| rows.iter().map(|r| r.0 as f64).collect::<Vec<_>>();
        let ys = |rows: &[(usize, Row)]| rows.iter().map(|r| r.1.s).collect::<Vec<_>>();
        let es = |rows: &[(usize, Row)]| rows.iter().map(|r| r.1.err).collect::<Vec<_>>();
        let mut out = Vec::new();
        for (i, k) in (n_core..names.len()).enumerate() {
            out.push(
                Series::new(names[k].clone(), xs(&series[k]), ys(&series[k]))
                    .with_err(es(&series[k]))
                    .dashed()
                    .with_color(n_core + i),
            );
        }
        for k in 0..n_core {
            let slope = fits[k]
                .as_ref()
                .map(|s| format!(" (slope {:+.2})", s.slope))
                .unwrap_or_default();
            out.push(
                Series::new(
                    format!("{}{}", names[k], slope),
                    xs(&series[k]),
                    ys(&series[k]),
                )
                .with_err(es(&series[k])),
            );
        }
        let anchor = |k: usize| series[k].last().map(|(t, r)| (*t as f64, r.s));
        let mut refs = Vec::new();
        let ddim = self.kernel == "ddim";
        if ddim {
            // DDIM's step terms do not shrink with the step: S grows like T.
            if let Some((x0, y0)) = (0..n_core).find_map(anchor) {
                refs.push(RefSlope::new(1.0, x0, y0 * 2.0, "slope +1"));
            }
        } else {
            if let Some((x0, y0)) = (0..n_core).filter(|&k| names[k] != "full").find_map(anchor) {
                refs.push(RefSlope::new(-1.0, x0, y0 * 0.5, "slope -1"));
            }
            if let Some((x0, y0)) = (0..n_core).find(|&k| names[k] == "full").and_then(anchor) {
                refs.push(RefSlope::new(-2.0, x0, y0 * 0.5, "slope -2"));
            }
        }
        let es_note = if early_stop > 0.0 {
            format!(", early stop {early_stop}")
        } else {
            String::new()
        };
        let route = if self.route == "b" { "B" } else { "A" };
        Plot {
            x_scale: XScale::Log,
            title: if ddim {
                format!("Path KL step sum S(T) of OCM-DDIM chains: {label}, {}", schedule.name())
            } else {
                format!("Path KL step sum S(T): {label}, {}", schedule.name())
            },
            x_label: "T (number of reverse steps)".to_string(),
            y_label: "S(T) = sum of E KL(q(x_s|x_t) || p(x_s|x_t))".to_string(),
            series: out,
            refs,
            caption: Some(format!(
                "route {route}; bars: quadrature error estimate; terminal KL {:.3e} not included; beta-tilde last step: {last_step}{es_note}",
                first.terminal_kl.value
            )),
        }
    }

    /// The step terms of the largest T along the chain: `T^p term_i` against `u_i = i / T`
    /// (`p = 3` for full, 2 otherwise), which tends to the local error density `g_f(u)` of
    /// `docs/schedules.md` as T grows.
    pub(super) fn steps_figure(
        &self,
        label: &str,
        schedule: &Schedule,
        families: &[Family],
        cell: &Cell,
    ) -> Plot {
        let t = cell.t as f64;
        let mut series = Vec::new();
        for &fam in families {
            let (name, p) = (fam.name(), term_order(fam));
            let rows: Vec<_> = cell.steps.iter().filter(|r| r.family == name).collect();
            let scale = t.powi(p);
            series.push(
                Series::new(
                    format!("{name} (T^{p} term)"),
                    rows.iter().map(|r| r.i as f64 / t).collect(),
                    rows.iter().map(|r| scale * r.term).collect(),
                )
                .with_err(rows.iter().map(|r| scale * r.err).collect()),
            );
        }
        Plot {
            x_scale: XScale::Linear,
            title: format!(
                "Step terms along the chain: {label}, {}, T = {}",
                schedule.name(),
                cell.t
            ),
            x_label: "u = i / T (0: data end, 1: noise end)".to_string(),
            y_label: "T^p x step term (p = 3 full, 2 otherwise)".to_string(),
            series,
            refs: Vec::new(),
            caption: Some(
                "T^p term_i tends to the local error density g(u) (docs/schedules.md); bars: quadrature error estimate"
                    .to_string(),
            ),
        }
    }
}
