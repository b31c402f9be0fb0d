//! Decisions per second for a 1-criterion, a 6-criterion nested and a 50-rule policy.
//! Run: `cargo bench --bench policy -- --warm-up-time 1 --measurement-time 3`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart::policy::{compile_text, Identity, OwnedRequest};
use serde_json::json;

/// Counts allocations so the bench can check that evaluation allocates nothing.
struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const ONE: &str = "allow: {or: [{email: {is: alice@example.com}}]}";

const SIX: &str = "
allow:
  and:
    - domain: {is: example.com}
    - http_method: {in: [GET, HEAD]}
  or:
    - groups: {has: admins}
    - claim/org/team: core
deny:
  or:
    - http_path: {starts_with: /admin}
  not:
    - source_ip: [10.0.0.0/8, 192.168.0.0/16]
";

fn fifty() -> String {
    let mut doc = String::new();
    for i in 0..50 {
        let rule = match i % 5 {
            0 => format!("- allow: {{or: [{{email: {{is: user{i}@example.com}}}}]}}\n"),
            1 => format!("- allow: {{and: [{{http_path: {{starts_with: /svc{i}}}}}, {{http_method: GET}}]}}\n"),
            2 => format!("- allow: {{or: [{{claim/team: team{i}}}]}}\n"),
            3 => format!("- deny: {{or: [{{http_path: {{starts_with: /blocked{i}}}}}]}}\n"),
            _ => format!("- allow: {{or: [{{groups: {{has: group{i}}}}}, {{domain: corp{i}.example}}]}}\n"),
        };
        doc.push_str(&rule);
    }
    doc
}

fn bench(c: &mut Criterion) {
    let identity = Identity::from_claims(&json!({
        "sub": "u-alice", "email": "alice@example.com", "groups": ["dev", "admins"],
        "org": {"team": "core"}, "team": ["team47", "team2"]
    }));
    let req = OwnedRequest::new("GET", "/app/page").with_source_ip("10.1.2.3".parse().unwrap());
    let fifty = fifty();
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        ("1-criterion", ONE),
        ("6-criterion-nested", SIX),
        ("50-rule", fifty.as_str()),
    ] {
        let policy = compile_text(text).unwrap();
        let ev = policy.evaluate(&req, Some(&identity));
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        assert!(before > 0, "the counting allocator is not active");
        for _ in 0..10_000 {
            black_box(policy.evaluate(black_box(&req), black_box(Some(&identity))));
            black_box(policy.evaluate(black_box(&req), black_box(None)));
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(allocations, 0, "{name}: evaluation allocated");
        eprintln!(
            "{name}: {} criteria, decision {:?}, 0 allocations in 20000 evaluations",
            policy.criteria_count(),
            ev.decision
        );
        group.bench_function(name, |b| {
            b.iter(|| black_box(&policy).evaluate(black_box(&req), black_box(Some(&identity))))
        });
    }
    let policy = compile_text(SIX).unwrap();
    group.bench_function("6-criterion-nested/anonymous", |b| {
        b.iter(|| black_box(&policy).evaluate(black_box(&req), black_box(None)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
