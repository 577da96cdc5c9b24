//! The load engine behind `tokenpace bench`.
//!
//! - [`arrival`]: when requests are sent (closed loop at a concurrency, or an open-loop
//!   schedule at a rate: constant or Poisson);
//! - [`workload`]: what is sent (a prompt, a prompts file, or synthetic prompts with target
//!   input and output token counts).

pub mod arrival;
pub mod workload;
