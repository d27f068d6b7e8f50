//! Progress on stderr: an indicatif bar (timed runs done out of all
//! planned, elapsed time, ETA) when stderr is a terminal; otherwise (a log
//! file, CI) each line is prefixed with `[done/planned, ETA]`. Scenario lines
//! are printed above the bar; before [`start`] (a scenario run on its own),
//! they go to stderr as they are.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

enum State {
    Bar(ProgressBar),
    Plain {
        total: u64,
        done: u64,
        start: Instant,
    },
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Starts counting `total` timed runs.
pub fn start(total: u64) {
    let state = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:40} {pos}/{len} runs  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        State::Bar(bar)
    } else {
        State::Plain {
            total,
            done: 0,
            start: Instant::now(),
        }
    };
    *STATE.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
}

fn print(line: &str, count: bool) {
    let mut g = STATE.lock().unwrap_or_else(|p| p.into_inner());
    match g.as_mut() {
        Some(State::Bar(b)) => {
            b.println(line);
            if count {
                b.inc(1);
            }
        }
        Some(State::Plain { total, done, start }) => {
            if count {
                *done += 1;
            }
            let el = start.elapsed().as_secs_f64();
            let eta = if *done > 0 {
                el / *done as f64 * total.saturating_sub(*done) as f64
            } else {
                0.0
            };
            eprintln!(
                "[{}/{} runs, {:.0} s, ETA {:.0} s] {line}",
                done, total, el, eta
            );
        }
        None => eprintln!("{line}"),
    }
}

/// Prints `line` above the bar (or to stderr).
pub fn line(line: impl AsRef<str>) {
    print(line.as_ref(), false);
}

/// Prints `line` and counts one timed run done.
pub fn done(line: impl AsRef<str>) {
    print(line.as_ref(), true);
}

/// Sets the bar's message (the scenario running).
pub fn message(msg: impl Into<String>) {
    if let Some(State::Bar(b)) = STATE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        b.set_message(msg.into());
    }
}

/// Removes the bar.
pub fn finish() {
    if let Some(State::Bar(b)) = STATE.lock().unwrap_or_else(|p| p.into_inner()).take() {
        b.finish_and_clear();
    }
}
