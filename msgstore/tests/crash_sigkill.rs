//! A child process writes through the std::fs executor and is SIGKILLed at random moments,
//! 200 times. After each kill the store is recovered and every message the child printed as
//! acknowledged must read back exactly, once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use msgstore::blocking::StdExecutor;
use msgstore::sim::sample_message;
use msgstore::{Compression, Config, Event, Message, Query, QueryResult, Store};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "MSGSTORE_CRASH_CHILD";
const CHANNEL: u64 = 42;
const CYCLES: u64 = 200;

fn config() -> Config {
    Config {
        segment_bytes: 128 * 1024,
        memtable_bytes: 64 * 1024,
        block_cache_bytes: 1024 * 1024,
        compression: Compression::Lz4,
        step_io_bytes: 64 * 1024,
        auto_compact: true,
    }
}

fn open(dir: &Path) -> (Store, StdExecutor, Vec<Event>) {
    let mut exec = StdExecutor::new(dir).expect("store dir");
    let mut store = Store::new(config());
    store.open();
    let mut events = Vec::new();
    for _ in 0..1000 {
        exec.run_turn(&mut store, &mut events);
        if store.is_open() || store.failure().is_some() {
            break;
        }
    }
    (store, exec, events)
}

/// Child mode: append forever, printing each acknowledged id.
#[test]
fn crash_child_entry() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, start) = arg.split_once(',').expect("dir,start");
    let mut ts: u64 = start.parse().expect("start ts");
    let (mut store, mut exec, mut events) = open(Path::new(dir));
    let mut out = std::io::stdout().lock();
    if let Some(e) = store.failure() {
        writeln!(out, "ERR {e}").ok();
        return;
    }
    writeln!(out, "READY").expect("stdout");
    out.flush().expect("stdout");
    let mut rng = rand::rngs::StdRng::seed_from_u64(ts);
    loop {
        for _ in 0..rng.random_range(1..8) {
            ts += 1;
            let id = ts << 22;
            if store.append(id, sample_message(CHANNEL, id)).is_err() {
                break;
            }
        }
        exec.run_turn(&mut store, &mut events);
        for e in events.drain(..) {
            match e {
                Event::Acked { token } => writeln!(out, "ACK {token}").expect("stdout"),
                Event::Failed { error, .. } | Event::Error(error) => {
                    writeln!(out, "ERR {error}").expect("stdout")
                }
                _ => {}
            }
        }
        out.flush().expect("stdout");
        std::thread::sleep(Duration::from_micros(300));
    }
}

fn scan(store: &mut Store, exec: &mut StdExecutor) -> Vec<Message> {
    let mut all = Vec::new();
    let mut before = u64::MAX;
    let mut events = Vec::new();
    for token in 0.. {
        store
            .query(
                token,
                Query::Before {
                    channel_id: CHANNEL,
                    before,
                    limit: 100,
                },
            )
            .expect("query");
        let mut turns = 0;
        let page = loop {
            turns += 1;
            assert!(turns < 10_000, "query never finished");
            exec.run_turn(store, &mut events);
            if let Some(pos) = events
                .iter()
                .position(|e| matches!(e, Event::QueryDone { .. }))
            {
                let Event::QueryDone { result, .. } = events.remove(pos) else {
                    unreachable!()
                };
                match result.expect("query ok") {
                    QueryResult::Messages(m) => break m,
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        let Some(last) = page.last() else { break };
        before = last.id;
        all.extend(page);
    }
    all
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_message() {
    let dir: PathBuf = std::env::temp_dir().join(format!("msgstore-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut acked: BTreeMap<u64, ()> = BTreeMap::new();
    let mut total_acks = 0usize;
    for cycle in 0..CYCLES {
        let start = 500_000_000_000 + cycle * 10_000_000;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{},{start}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Kill only once the child is writing, at a random moment of its load. (libtest puts
        // "test crash_child_entry ... " in front of the child's first line.)
        for line in lines.by_ref() {
            let line = line.expect("child output");
            assert!(
                !line.starts_with("ERR"),
                "cycle {cycle}: child reported {line}"
            );
            if line.ends_with("READY") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(1..25)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ACK ") {
                // A line cut by the kill is not a complete acknowledgement print.
                if let Ok(id) = id.parse::<u64>() {
                    acked.insert(id, ());
                    total_acks += 1;
                }
            }
            assert!(
                !line.starts_with("ERR"),
                "cycle {cycle}: child reported {line}"
            );
        }
        let (mut store, mut exec, events) = open(&dir);
        assert!(
            store.is_open(),
            "cycle {cycle}: recovery failed: {:?} {events:?}",
            store.failure()
        );
        let all = scan(&mut store, &mut exec);
        let mut seen = BTreeMap::new();
        for m in &all {
            assert!(
                seen.insert(m.id, ()).is_none(),
                "cycle {cycle}: {} listed twice",
                m.id
            );
            assert_eq!(
                *m,
                sample_message(CHANNEL, m.id),
                "cycle {cycle}: content differs"
            );
        }
        for id in acked.keys() {
            assert!(
                seen.contains_key(id),
                "cycle {cycle}: acknowledged {id} lost"
            );
        }
        // Unacknowledged survivors are now part of history: they must stay.
        for id in seen.keys() {
            acked.insert(*id, ());
        }
    }
    eprintln!("acks {total_acks}, messages {}", acked.len());
    assert!(
        total_acks > 1000,
        "child acknowledged too little: {total_acks}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
