pub mod path_kl;
