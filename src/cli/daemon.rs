//! `verbatim listen --daemon`, the resident dictation daemon, and its clients
//! `verbatim listen start|stop|toggle|status|history`.
//!
//! The daemon loads the model once and keeps the microphone closed until a client starts a
//! dictation. One thread accepts clients (each served on its own thread, so two at once are
//! fine); the main thread runs the dictation sessions, whose events go through the same
//! [`Delivery`] as `verbatim listen`.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Subcommand;

use verbatim::engine::Engine;
use verbatim::listen::capture::Microphone;
use verbatim::listen::control::{self, Command, Reply, Server, State};
use verbatim::listen::dictation::Event;
use verbatim::listen::history::{self, Entry};
use verbatim::listen::hotkey::Hotkey;
use verbatim::listen::session::{self, Ended, Input, SessionOptions};
use verbatim::listen::spoken::separator;

use super::error::CliError;
use super::exit_code;
use super::listen::Delivery;
use super::print_warning;

/// How long a client may take to send its command.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for the daemon's reply to a start or a status.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop waits: it is answered once the dictation is delivered, and read whole
/// (`--whole`) that is after a reading of up to 30 minutes of audio, and its typing.
const STOP_TIMEOUT: Duration = Duration::from_secs(900);
/// Pause between attempts to reopen a microphone that went away.
const RETRY: Duration = Duration::from_secs(1);

/// The clients of a running daemon.
#[derive(Debug, Subcommand)]
pub enum Control {
    /// Start dictating (the daemon opens the microphone).
    Start {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// End the dictation: the last words are delivered, then printed here.
    Stop {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start when idle, stop when dictating (bind this to a key).
    Toggle {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say whether the daemon is idle or listening.
    Status {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the last dictations ($XDG_DATA_HOME/verbatim/history.jsonl).
    History {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
        count: usize,
        /// JSON Lines: time, duration, text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a client command.
pub fn control(control: &Control) -> Result<i32, CliError> {
    let (command, json) = match *control {
        Control::Start { json } => (Command::Start, json),
        Control::Stop { json } => (Command::Stop, json),
        Control::Toggle { json } => (Command::Toggle, json),
        Control::Status { json } => (Command::Status, json),
        Control::History { count, json } => return show_history(count, json),
    };
    let timeout = match command {
        Command::Stop | Command::Toggle => STOP_TIMEOUT,
        _ => REPLY_TIMEOUT,
    };
    let reply = control::request(&control::socket_path(), command, timeout)?;
    if json {
        println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    } else {
        if let Some(text) = &reply.text {
            println!("{text}");
        }
        if command == Command::Status {
            println!(
                "{} (daemon pid {})",
                match reply.state {
                    State::Idle => "idle",
                    State::Listening => "listening",
                },
                reply.pid
            );
        }
        if let Some(m) = &reply.message {
            eprintln!("verbatim: {m}");
        }
    }
    Ok(if reply.ok {
        exit_code::OK
    } else {
        exit_code::FAILURE
    })
}

fn show_history(count: usize, json: bool) -> Result<i32, CliError> {
    for e in history::last(&history::default_path(), count)? {
        if json {
            println!("{}", serde_json::to_string(&e).unwrap_or_default());
        } else {
            println!("{}  {:>6.1} s  {}", e.time, e.duration, e.text);
        }
    }
    Ok(exit_code::OK)
}

/// Binds the control socket (before the model loads, so a second daemon fails at once).
pub fn bind(quiet: bool) -> Result<Server, CliError> {
    let (server, notice) = Server::bind(&control::socket_path())?;
    if let Some(n) = notice {
        if !quiet {
            print_warning(n);
        }
    }
    Ok(server)
}

/// What the clients and the sessions share.
struct Shared {
    state: Mutex<Status>,
    changed: Condvar,
}

struct Status {
    /// A client asked for dictation (the session may not have started yet).
    listening: bool,
    /// Sessions asked for, and sessions finished: a stop waits until they are equal.
    asked: u64,
    done: u64,
    /// Stops the current session.
    stop: Arc<AtomicBool>,
    /// The text of the last finished session.
    last_text: String,
    /// A microphone problem, while it lasts.
    problem: Option<String>,
    /// SIGTERM or Ctrl-C: end the session, then the daemon.
    shutdown: bool,
}

impl Shared {
    fn reply(&self, st: &Status, ok: bool, text: Option<String>, message: Option<String>) -> Reply {
        Reply {
            ok,
            // Listening until the last session has delivered its text, not just been asked to stop.
            state: if st.listening || st.done < st.asked {
                State::Listening
            } else {
                State::Idle
            },
            text,
            message: message.or_else(|| st.problem.clone()),
            pid: std::process::id(),
        }
    }

    /// Carries out a client's command.
    fn handle(&self, command: Command) -> Reply {
        let mut st = self.state.lock().unwrap();
        let command = match command {
            Command::Toggle if st.listening => Command::Stop,
            Command::Toggle => Command::Start,
            c => c,
        };
        match command {
            Command::Status => self.reply(&st, true, None, None),
            Command::Start if st.shutdown => {
                self.reply(&st, false, None, Some("the daemon is shutting down".into()))
            }
            Command::Start if st.listening => {
                self.reply(&st, true, None, Some("already listening".into()))
            }
            Command::Start => {
                st.listening = true;
                st.asked += 1;
                st.stop = Arc::new(AtomicBool::new(false));
                self.changed.notify_all();
                self.reply(&st, true, None, None)
            }
            Command::Stop if !st.listening => {
                self.reply(&st, true, None, Some("not listening".into()))
            }
            Command::Stop | Command::Toggle => {
                st.listening = false;
                st.stop.store(true, Ordering::SeqCst);
                let asked = st.asked;
                let st = self.changed.wait_while(st, |s| s.done < asked).unwrap();
                self.reply(&st, true, Some(st.last_text.clone()), None)
            }
        }
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C; the socket is removed on the way out.
pub fn serve(
    server: Server,
    hotkey: Option<Hotkey>,
    engine: &Engine,
    opts: &SessionOptions,
    delivery: &mut Delivery,
    interrupted: &Arc<AtomicBool>,
    quiet: bool,
) -> Result<i32, CliError> {
    let shared = Arc::new(Shared {
        state: Mutex::new(Status {
            listening: false,
            asked: 0,
            done: 0,
            stop: Arc::new(AtomicBool::new(false)),
            last_text: String::new(),
            problem: None,
            shutdown: false,
        }),
        changed: Condvar::new(),
    });
    let listener = server
        .listener()
        .try_clone()
        .map_err(|e| CliError::failure(format!("{}: {e}", server.path().display())))?;
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve_client(&shared, stream));
            }
        });
    }
    {
        // The signal handler only sets a flag; this turns it into a shutdown.
        let shared = shared.clone();
        let interrupted = interrupted.clone();
        std::thread::spawn(move || {
            while !interrupted.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut st = shared.state.lock().unwrap();
            st.shutdown = true;
            st.listening = false;
            st.stop.store(true, Ordering::SeqCst);
            shared.changed.notify_all();
        });
    }
    if let Some(hk) = hotkey {
        if !quiet {
            eprintln!(
                "verbatim: push-to-talk: hold the key to dictate ({} input devices watched)",
                hk.devices()
            );
        }
        let shared = shared.clone();
        hk.watch(move |down| {
            shared.handle(if down { Command::Start } else { Command::Stop });
        });
    }
    if !quiet {
        eprintln!(
            "verbatim: dictation daemon ready on {}; `verbatim listen toggle` starts and stops dictating",
            server.path().display()
        );
    }
    let history_path = history::default_path();
    loop {
        let (number, stop) = {
            let mut st = shared
                .changed
                .wait_while(shared.state.lock().unwrap(), |s| {
                    !s.shutdown && s.done == s.asked
                })
                .unwrap();
            if st.done == st.asked {
                break;
            }
            // A start, stop and start before this loop woke: the earlier ones are over.
            st.done = st.asked - 1;
            shared.changed.notify_all();
            (st.asked, st.stop.clone())
        };
        let started = (SystemTime::now(), Instant::now());
        let text = dictate(engine, opts, delivery, &stop, &shared, quiet);
        delivery.finish();
        let duration = started.1.elapsed().as_secs_f64();
        if !text.is_empty() {
            let entry = Entry::new(started.0, duration, text.clone());
            if let Err(e) = history::append(&history_path, &entry, history::MAX_BYTES) {
                print_warning(format!("history not saved: {e}"));
            }
        }
        let mut st = shared.state.lock().unwrap();
        // A dictation that ended on its own (read whole, at 30 minutes) is not listening.
        if st.asked == number {
            st.listening = false;
        }
        st.done = number;
        st.last_text = text;
        st.problem = None;
        shared.changed.notify_all();
        if st.shutdown && st.done == st.asked {
            break;
        }
    }
    drop(server);
    if !quiet {
        eprintln!("verbatim: dictation daemon stopped");
    }
    Ok(exit_code::OK)
}

/// One dictation, from start to stop, across a microphone that goes away and comes back.
/// Returns its committed text.
fn dictate(
    engine: &Engine,
    opts: &SessionOptions,
    delivery: &mut Delivery,
    stop: &AtomicBool,
    shared: &Shared,
    quiet: bool,
) -> String {
    let mut text = String::new();
    let mut said_problem = false;
    while !stop.load(Ordering::SeqCst) {
        let result = session::run(engine, opts, stop, &mut |e| {
            delivery.deliver(e);
            if let Event::UtteranceEnd { text: u, .. } = e {
                text.push_str(separator(&text, u));
                text.push_str(u);
            }
        });
        let problem = match result {
            Ok((summary, None)) => {
                if summary.ended == Ended::Duration && !quiet {
                    eprintln!(
                        "verbatim: the dictation reached {:.0} minutes and was delivered",
                        summary.stats.audio_seconds / 60.0
                    );
                }
                break;
            }
            Ok((_, Some(e))) | Err(e) => e.to_string(),
        };
        if !said_problem && !quiet {
            print_warning(format!(
                "{problem}; listening again when the microphone is back"
            ));
        }
        said_problem = true;
        shared.state.lock().unwrap().problem = Some(format!("microphone: {problem}"));
        // Wait until the microphone opens again (or the dictation is stopped), and say so.
        while !stop.load(Ordering::SeqCst) {
            let until = Instant::now() + RETRY;
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let back = match &opts.input {
                Input::Microphone(spec) => Microphone::open(spec.as_deref()).is_ok(),
                Input::File { .. } => true,
            };
            if back {
                if !quiet {
                    eprintln!("verbatim: the microphone is back; listening");
                }
                said_problem = false;
                shared.state.lock().unwrap().problem = None;
                break;
            }
        }
    }
    text
}

fn serve_client(shared: &Shared, stream: UnixStream) {
    let reply = match control::read_command(&stream, CLIENT_TIMEOUT) {
        Ok(command) => shared.handle(command),
        Err(why) => {
            let st = shared.state.lock().unwrap();
            shared.reply(&st, false, None, Some(why))
        }
    };
    let _ = control::write_reply(&stream, &reply);
}
