//! Random streams: every sample, probe or cell that draws random numbers gets its own ChaCha8
//! stream `stream(seed, i)`, so results do not depend on the thread count or on which other
//! items run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The ChaCha8 generator seeded with `seed` on stream `i` (independent streams of one seed).
#[must_use]
pub fn stream(seed: u64, i: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
    rng
}
