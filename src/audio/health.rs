//! How one audio stream is doing, written by its actor thread and its cpal callbacks, read by `ptt status`.
//!
//! Capture and playback keep the same record, so it lives here once: the device state, the stream errors
//! (counted, not fatal: the ALSA pulse plugin reports I/O error 5 many times while audio flows fine), the
//! last of them, and when the data callback last ran, which is what tells a dead device (errors and no
//! data for [`ERROR_STALL_MS`]) from a noisy healthy one. Atomics and short locks only: the callbacks run on
//! the audio server's real-time threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{DeviceState, ERROR_STALL_MS, lock};

pub(crate) struct DeviceHealth {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last data callback.
    last_callback_ms: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    state: Mutex<DeviceState>,
}

impl DeviceHealth {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_callback_ms: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            state: Mutex::new(DeviceState::Closed),
        }
    }

    /// Milliseconds since this record was made: the clock of every `*_ms` stamp of the stream.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn state(&self) -> DeviceState {
        lock(&self.state).clone()
    }

    pub(crate) fn set_state(&self, s: DeviceState) {
        *lock(&self.state) = s;
    }

    /// The data callback ran (or the stream started or resumed, which counts as a fresh start).
    pub(crate) fn callback_ran(&self) {
        self.last_callback_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the data callback last ran.
    pub(crate) fn silent_for_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.last_callback_ms.load(Ordering::Relaxed))
    }

    /// No data callback for [`ERROR_STALL_MS`]: errors now mean the device is gone.
    pub(crate) fn stale(&self) -> bool {
        self.silent_for_ms() > ERROR_STALL_MS
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// The error callback of both directions: count, remember, log sparingly; only a vanished device is
    /// reported (`lost`): cpal says so, or errors keep coming while no data callback ran for a while (`stale`).
    pub(crate) fn on_error(&self, e: &cpal::Error, stale: bool, lost: impl FnOnce()) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut l) = self.last_error.try_lock() {
            *l = Some(e.to_string());
        }
        if n == 1 || n.is_power_of_two() {
            log::debug!("audio stream error #{n} (not fatal): {e}");
        }
        if stale || matches!(e.kind(), cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated) {
            lost();
        }
    }
}
