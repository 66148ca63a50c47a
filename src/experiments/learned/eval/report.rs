//! Assembling the cells into the results JSON, the text table and the figures.

use super::*;

impl LearnedEvalStudy {
    /// The text tables the binary prints.
    #[allow(clippy::too_many_lines)]
    pub(super) fn table(&self, s: &Setup, report: &EvalReport, mmd: &[MmdCell]) -> String {
        use std::fmt::Write;
        let mut o = self.kl_table(
            s,
            &s.steps,
            report,
            &format!(
                "exact path KL (terminal term excluded) of model chains on {} (D = {}), {} score, schedule {}; rule: {}",
                s.data.name,
                s.data.q0.dim(),
                self.score,
                self.schedule,
                report.rule
            ),
        );
        if mmd.len() > 1 {
            let _ = writeln!(
                o,
                "\nMMD^2_u x 1e3 (sum kernel h = 2^-2..2^2, {} samples; exact-vs-exact floor {:.2} +- {:.2})",
                self.samples,
                mmd[0].mmd * 1e3,
                mmd[0].se * 1e3
            );
            for kernel in ["ddpm", "ddim"] {
                let ms: Vec<&MmdCell> = mmd.iter().filter(|m| m.kernel == kernel).collect();
                if ms.is_empty() {
                    continue;
                }
                let _ = write!(o, "{kernel:>12}");
                for t in &s.mmd_steps {
                    let _ = write!(o, " {t:>16}");
                }
                o.push('\n');
                let mut seen: Vec<&str> = Vec::new();
                for m in &ms {
                    if seen.contains(&m.method.as_str()) {
                        continue;
                    }
                    seen.push(&m.method);
                    let _ = write!(o, "{:>12}", m.method);
                    for t in &s.mmd_steps {
                        match ms.iter().find(|x| x.method == m.method && x.steps == *t) {
                            Some(x) => {
                                let _ = write!(
                                    o,
                                    " {:>16}",
                                    format!("{:.2} +- {:.2}", x.mmd * 1e3, x.se * 1e3)
                                );
                            }
                            None => {
                                let _ = write!(o, " {:>16}", "-");
                            }
                        }
                    }
                    o.push('\n');
                }
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for c in &report.cov_error {
            if !names.contains(&c.method.as_str()) {
                names.push(&c.method);
            }
        }
        if !names.is_empty() {
            let _ = writeln!(o, "\ncovariance MSE E(1/D)||diag Sigma - diag C||^2 of the one-step kernel (1000-step grid), relative to E(1/D)||diag C||^2:");
            let ts: Vec<f64> = {
                let mut v: Vec<f64> = report.cov_error.iter().map(|c| c.t).collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v
            };
            let pick: Vec<f64> = ts.iter().copied().step_by((ts.len() / 6).max(1)).collect();
            let _ = write!(o, "{:>12}", "method \\ t");
            for t in &pick {
                let _ = write!(o, " {t:>10.4}");
            }
            o.push('\n');
            for name in names {
                let _ = write!(o, "{name:>12}");
                for t in &pick {
                    match report
                        .cov_error
                        .iter()
                        .find(|c| c.method == name && c.t.to_bits() == t.to_bits())
                    {
                        Some(c) => {
                            let _ = write!(o, " {:>10.2e}", c.rel_mse);
                        }
                        None => {
                            let _ = write!(o, " {:>10}", "-");
                        }
                    }
                }
                o.push('\n');
            }
        }
        if !report.j_asymmetry.is_empty() {
            let _ = writeln!(o, "\nlearned Jacobian: ||J - J^T||_F / ||J||_F (mean over q_t; rms) and ||J - H|| / ||H|| (rms):");
            for a in &report.j_asymmetry {
                let _ = writeln!(
                    o,
                    "  t = {:.4} (ln abar {:+.3e}): {:.3e}  {:.3e}  {:.3e}",
                    a.t, a.ln_abar, a.mean_ratio, a.rms_ratio, a.rel_err_vs_h
                );
            }
        }
        o
    }

    /// The path-KL block of the table: `heading`, then S_full and each method per T.
    pub(super) fn kl_table(
        &self,
        _s: &Setup,
        steps: &[usize],
        report: &EvalReport,
        heading: &str,
    ) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "{heading}");
        let _ = writeln!(
            o,
            "path_kl = S_full + mean part + cov part; each cell: path_kl [mean part / cov part]"
        );
        let _ = write!(o, "{:>12}", "method \\ T");
        for t in steps {
            let _ = write!(o, " {t:>34}");
        }
        o.push('\n');
        let mut names: Vec<&str> = Vec::new();
        for r in &report.rows {
            if !names.contains(&r.method.as_str()) {
                names.push(&r.method);
            }
        }
        if let Some(r) = report.rows.first() {
            let _ = write!(o, "{:>12}", "S_full");
            for t in steps {
                let sf = report
                    .rows
                    .iter()
                    .find(|x| x.steps == *t)
                    .map_or(r.s_full, |x| x.s_full);
                let _ = write!(o, " {:>34}", format!("{:.3e} +- {:.0e}", sf.value, sf.err));
            }
            o.push('\n');
        }
        for name in &names {
            let _ = write!(o, "{name:>12}");
            for t in steps {
                match report
                    .rows
                    .iter()
                    .find(|r| r.method == *name && r.steps == *t)
                {
                    Some(r) => {
                        let _ = write!(
                            o,
                            " {:>34}",
                            format!(
                                "{:.3e} [{:.2e} / {:.2e}]",
                                r.path_kl.value, r.mean_part.value, r.cov_part.value
                            )
                        );
                    }
                    None => {
                        let _ = write!(o, " {:>34}", "-");
                    }
                }
            }
            o.push('\n');
        }
        o
    }

    /// The figures: covariance error vs t, path KL vs T, MMD vs T (suffixes
    /// `_{cov_error,path_kl,mmd}_<data>` with the exact score, `..._<data>_learned` with the
    /// learned one; a figure without a series is not drawn).
    pub(super) fn figures_of(
        &self,
        s: &Setup,
        report: &EvalReport,
        mmd: &[MmdCell],
    ) -> Vec<(String, Figure)> {
        let label = self.figure_label();
        let schedule = &s.schedule;
        let line = |name: &str, x: Vec<f64>, y: Vec<f64>, index: usize| {
            Series::new(name, x, y).with_color(index).with_marker(index)
        };
        let mut names: Vec<String> = Vec::new();
        for r in &report.rows {
            if !names.contains(&r.method) {
                names.push(r.method.clone());
            }
        }
        // The sampled-only methods (LGS variants) after the evaluated ones, for the MMD figure.
        let mut all_names = names.clone();
        for m in mmd {
            if m.method != "exact" && !all_names.contains(&m.method) {
                all_names.push(m.method.clone());
            }
        }
        let color = |m: &str| all_names.iter().position(|n| n == m).unwrap_or(0);
        let mut out = Vec::new();
        // Covariance error against t.
        let mut series = Vec::new();
        for name in &names {
            let pts: Vec<_> = report
                .cov_error
                .iter()
                .filter(|c| &c.method == name)
                .collect();
            if pts.is_empty() {
                continue;
            }
            series.push(line(
                name,
                pts.iter().map(|c| c.t).collect(),
                pts.iter().map(|c| c.mse).collect(),
                color(name),
            ));
        }
        // A method without a drawable value (all infinite, or MMD^2 <= 0) is left out.
        series.retain(|s| s.has_drawable_point(true));
        if !series.is_empty() {
            out.push((
                format!("_cov_error_{label}"),
                Figure::Plot(Plot {
                    x_scale: XScale::Log,
                    title: format!("Diagonal covariance error vs t: {label}"),
                    x_label: format!("t ({} time of the 1000-step grid)", schedule.name()),
                    y_label: "E (1/D) ||diag Sigma_(t-1)(x_t) - diag C(x_t)||^2".into(),
                    series,
                    refs: vec![],
                    caption: Some(
                        "one-step kernel of the 1000-step grid; expectation over q_t by randomised QMC (8192 nodes per t)"
                            .into(),
                    ),
                }),
            ));
        }
        // Path KL against T.
        let mut series = Vec::new();
        for name in &names {
            let pts: Vec<_> = report
                .rows
                .iter()
                .filter(|r| &r.method == name && r.path_kl.value < PLOT_CAP)
                .collect();
            if pts.is_empty() {
                continue;
            }
            series.push(
                line(
                    name,
                    pts.iter().map(|r| r.steps as f64).collect(),
                    pts.iter().map(|r| r.path_kl.value).collect(),
                    color(name),
                )
                .with_err(pts.iter().map(|r| r.path_kl.err).collect()),
            );
        }
        if let Some(r0) = report.rows.first() {
            let pts: Vec<_> = report
                .rows
                .iter()
                .filter(|r| r.method == r0.method)
                .collect();
            series.push(
                Series::new(
                    "S_full (Gaussian limit)",
                    pts.iter().map(|r| r.steps as f64).collect(),
                    pts.iter().map(|r| r.s_full.value).collect(),
                )
                .dashed(),
            );
        }
        series.retain(|s| s.has_drawable_point(true));
        out.push((
            format!("_path_kl_{label}"),
            Figure::Plot(Plot {
                x_scale: XScale::Log,
                title: format!("Exact path KL of model chains: {label}"),
                x_label: "T (number of reverse steps)".into(),
                y_label: "path KL = S_full + mean part + cov part".into(),
                series,
                refs: vec![],
                caption: Some(format!(
                    "{}; terminal KL {:.2e} excluded; bars: error estimates; values > 1e4 (degenerate last steps) not drawn",
                    schedule.name(),
                    report.terminal_kl.value
                )),
            }),
        ));
        // MMD against T.
        let mut series = Vec::new();
        for kernel in ["ddpm", "ddim"] {
            for name in &all_names {
                let pts: Vec<_> = mmd
                    .iter()
                    .filter(|m| &m.method == name && m.kernel == kernel)
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let s = line(
                    // One legend entry per method: DDIM's curve (dashed) shares the colour.
                    if kernel == "ddim" { "" } else { name },
                    pts.iter().map(|m| m.steps as f64).collect(),
                    pts.iter().map(|m| m.mmd).collect(),
                    color(name),
                );
                series.push(if kernel == "ddim" { s.dashed() } else { s });
            }
        }
        // A method without a drawable value (all infinite, or MMD^2 <= 0) is left out.
        series.retain(|s| s.has_drawable_point(true));
        if !series.is_empty() {
            let floor = mmd.first().map_or(0.0, |m| m.se);
            out.push((
                format!("_mmd_{label}"),
                Figure::Plot(Plot {
                    x_scale: XScale::Log,
                    title: format!("MMD^2 of samples vs T: {label} (solid: DDPM, dashed: DDIM)"),
                    x_label: "T (number of reverse steps)".into(),
                    y_label: "MMD^2_u (sum of Gaussian kernels)".into(),
                    series,
                    refs: vec![],
                    caption: Some(format!(
                        "non-positive estimates not drawn; exact-vs-exact s.e. {floor:.1e}"
                    )),
                }),
            ));
        }
        out
    }
}
