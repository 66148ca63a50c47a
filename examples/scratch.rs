use covlab::path_kl::*;
use covlab::schedule::Schedule;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = args.get(1).map(String::as_str).unwrap_or("mog40");
    let route = if args.get(2).map(String::as_str) == Some("b") {
        Route::B
    } else {
        Route::A
    };
    let steps: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect())
        .unwrap_or(vec![8, 16, 32, 64, 128, 256, 512, 1024]);
    let q = covlab::presets::load(data).unwrap();
    let mut p = PathKlParams::default();
    p.route = route;
    let t0 = std::time::Instant::now();
    let r = path_kl_sweep(&q, &Schedule::vp_linear(), &steps, &p, &|_, _| {}).unwrap();
    eprintln!("time {:?}", t0.elapsed());
    println!(
        "terminal {:?} H0 {:?} HT {:?} last {}",
        r.terminal_kl, r.entropy_start, r.entropy_end, r.beta_tilde_last_step
    );
    for row in &r.rows {
        println!(
            "{:10} {:5} {:.10e} {:.2e} rel {:.1e}",
            row.family.name(),
            row.steps,
            row.s.value,
            row.s.err,
            row.s.err / row.s.value.abs()
        );
    }
}
