//! What a policy's WASI looks like beyond "nothing granted": time that
//! stands still, randomness from a fixed seed, and no way to wait.
//!
//! Determinism is a promise of the design: the same request and
//! configuration give the same decision, so a decision can be replayed,
//! audited and cached. A policy therefore reads a clock that never moves
//! (the Unix epoch, or with the `clock` grant the moment its evaluation
//! began) and random numbers from a generator seeded the same way in every
//! evaluation.
//!
//! Waiting is refused rather than bounded. WASI is linked synchronously, so
//! a wait would happen on the host thread, where no epoch deadline reaches
//! it; and with a clock that stands still, a wait for time to pass could
//! only end at the deadline anyway. Every pollable a policy can obtain is
//! either ready now or never (the clock's), so `wasi:io/poll` answers at
//! once: `block` on a ready pollable returns, `poll` returns the ready ones,
//! and a wait on nothing ready ends the evaluation with [`WaitRefused`].

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll::HostPollable;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiView};

/// The WASI version whose `poll` and `monotonic-clock` functions are
/// replaced: the one `wasmtime_wasi::p2::add_to_linker_sync` defines (older
/// minor versions that components import resolve to it).
const WASI_POLL: &str = "wasi:io/poll@0.2.12";
const WASI_MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The most a policy may ask of `get-random-bytes` in one call: the host
/// allocates it outside the policy's memory cap.
pub(crate) const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// Seeds of the two generators: fixed, so every evaluation draws the same
/// numbers (the values are arbitrary; changing them changes what policies
/// that read randomness decide).
const SECURE_SEED: u64 = 0x706f_7274_6375_6c6c;
const INSECURE_SEED: u64 = 0x6973_2064_6574_6572;
/// What `wasi:random/insecure-seed` returns.
pub(crate) const INSECURE_RANDOM_SEED: u128 = 0x6d69_6e69_7374_6963_2062_7920_6465_7369;

/// A policy tried to wait for something that is not ready: time to pass
/// (a sleep, a timeout) or input that will never come.
#[derive(Debug, thiserror::Error)]
#[error(
    "the policy waited (a sleep, a poll or a blocking read); policies cannot wait: \
     the sandbox's clock stands still, so the wait could only end at the deadline"
)]
pub struct WaitRefused;

/// The sandbox's wall clock: a fixed instant.
pub(crate) struct FixedWallClock(Duration);

impl FixedWallClock {
    /// The Unix epoch, or with the `clock` grant the present moment (read
    /// once: time does not pass during an evaluation).
    pub(crate) fn new(granted: bool) -> Self {
        let now = granted
            .then(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
            })
            .flatten();
        Self(now.unwrap_or_default())
    }
}

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// The sandbox's monotonic clock: always zero.
pub(crate) struct StoppedClock;

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// SplitMix64: small, fast, and with a fixed seed the same sequence in every
/// evaluation and every release (the algorithm is written here, not taken
/// from a crate whose output may change between versions).
pub(crate) struct SeededRandom(u64);

impl SeededRandom {
    pub(crate) fn secure() -> Self {
        Self(SECURE_SEED)
    }

    pub(crate) fn insecure() -> Self {
        Self(INSECURE_SEED)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Infallible> {
        for chunk in destination.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// A clock pollable: ready at once when it asked for no time to pass,
/// otherwise never, since the clock stands still.
enum Alarm {
    Now,
    Never,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Alarm {
    async fn ready(&mut self) {
        if let Alarm::Never = self {
            std::future::pending::<()>().await;
        }
    }
}

/// Replaces the functions of `wasi:io/poll` and `wasi:clocks/monotonic-clock`
/// that can wait, after the rest of WASI is linked.
pub(crate) fn link<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, T>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let table = store.data_mut().ctx().table;
            if pollables.is_empty() {
                wasmtime::bail!("empty poll list");
            }
            let mut ready = Vec::new();
            for (index, pollable) in (0u32..).zip(pollables) {
                if is_ready(table, pollable)? {
                    ready.push(index);
                }
            }
            if ready.is_empty() {
                return Err(WaitRefused.into());
            }
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, T>, (pollable,): (Resource<DynPollable>,)| {
            if is_ready(store.data_mut().ctx().table, pollable)? {
                Ok(())
            } else {
                Err(WaitRefused.into())
            }
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |mut store: StoreContextMut<'_, T>, (pollable,): (Resource<DynPollable>,)| {
            Ok((is_ready(store.data_mut().ctx().table, pollable)?,))
        },
    )?;

    let mut clock = linker.instance(WASI_MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, T>, (when,): (u64,)| {
            let alarm = if when <= StoppedClock.now() {
                Alarm::Now
            } else {
                Alarm::Never
            };
            Ok((alarm_pollable(store.data_mut().ctx().table, alarm)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, T>, (duration,): (u64,)| {
            let alarm = if duration == 0 {
                Alarm::Now
            } else {
                Alarm::Never
            };
            Ok((alarm_pollable(store.data_mut().ctx().table, alarm)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn alarm_pollable(
    table: &mut ResourceTable,
    alarm: Alarm,
) -> wasmtime::Result<Resource<DynPollable>> {
    let alarm = table.push(alarm)?;
    subscribe(table, alarm)
}

/// Whether `pollable` is ready, asked once, without waiting. Every pollable
/// of the sandbox answers on the first poll, and none needs a runtime.
fn is_ready(table: &mut ResourceTable, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
    poll_once(HostPollable::ready(table, pollable)).unwrap_or(Ok(false))
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn the_generators_repeat_from_one_evaluation_to_the_next() {
        let draw = |mut random: SeededRandom| {
            let mut bytes = [0; 20];
            random.fill_bytes(&mut bytes);
            (bytes, random.next_u64())
        };
        assert_eq!(draw(SeededRandom::secure()), draw(SeededRandom::secure()));
        assert_ne!(draw(SeededRandom::secure()), draw(SeededRandom::insecure()));
        // Not a constant stream.
        let (bytes, _) = draw(SeededRandom::secure());
        assert_ne!(bytes[..8], bytes[8..16]);
    }

    #[test]
    fn the_wall_clock_is_the_epoch_unless_granted() {
        assert_eq!(FixedWallClock::new(false).now(), Duration::ZERO);
        assert!(FixedWallClock::new(true).now() > Duration::from_secs(1_700_000_000));
    }
}
