//! Backend tests written once as `fn(&Device) -> anyhow::Result<()>`: `device_tests!(a, b)`
//! makes the tests `cpu::a`, `cpu::b` and, with the `cuda` feature, `cuda::a`, `cuda::b` on
//! GPU 0 (run on a GPU machine: see the README's GPU section).

/// Makes a CPU test and (feature `cuda`) a CUDA test from each `fn(&Device) -> Result<()>`.
#[macro_export]
macro_rules! device_tests {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&covlab::tensor::candle_core::Device::Cpu)
                }
            )*
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&covlab::tensor::candle_core::Device::new_cuda(0)?)
                }
            )*
        }
    };
}
