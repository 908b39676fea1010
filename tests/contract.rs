//! The typed contract between the pages and their workers: every control's rule is defined once
//! (`Limits`), the URL and the form are read by the same parser, bad values get bounded messages
//! and keep their defaults, and every message survives serialisation.

use ddpm_web::app::controls::{Controls, ECHO_CHARS, Limits, SamplerKind, View, echo};
use ddpm_web::app::protocol::{BackendInfo, BackendKind, BackendPreference, ParsedQuery, SamplerReply, SamplerRequest};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::diffusion::sampling::{ClassChoice, GuidanceInterval, Method};
use ddpm_web::diffusion::schedule::VarianceKind;
use ddpm_web::diffusion::variance::VarianceChoice;

fn pairs(query: &str) -> Vec<(String, String)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k.to_string(), v.to_string())
    }).collect()
}

fn limits() -> Limits {
    Limits::new(1000, 2.0)
}

#[test]
fn defaults_are_any_digit_guided_ddim_50() {
    let c = Controls::defaults(&limits());
    assert_eq!(c.class, ClassChoice::AnyDigit);
    assert_eq!((c.guidance, c.sampler, c.steps, c.eta, c.seed, c.grid, c.every, c.view), (2.0, SamplerKind::Ddim, 50, 0.0, 1, 4, 1, View::State));
    let s = c.settings(&DdpmConfig::default(), 0, 4);
    assert!(s.guided());
    assert_eq!(s.method, Method::Ddim { steps: 50, eta: 0.0 });
    // Where guidance applies comes from the model's config, with its variance.
    let config = DdpmConfig { guidance_interval: Some(GuidanceInterval { first: 5, last: 9 }), variance: VarianceKind::BetaTilde, ..DdpmConfig::default() };
    assert_eq!(c.settings(&config, 0, 4).guidance_interval, config.guidance_interval);
    assert_eq!(c.settings(&DdpmConfig { guidance_interval: None, ..config.clone() }, 0, 4).guidance_interval, None);
    let ddpm = Controls { sampler: SamplerKind::Ddpm, ..c };
    assert_eq!(ddpm.settings(&config, 0, 4).method, Method::Ddpm { variance: VarianceChoice::BetaTilde });
}

#[test]
fn url_values_within_limits_are_read_and_round_trip() {
    let (c, problems) = Controls::parse(&pairs("digit=7&guidance=3.5&sampler=ddpm&steps=20&eta=0.3&seed=42&count=16&every=5&view=x0"), &limits());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(c.class, ClassChoice::Digit(7));
    assert_eq!((c.guidance, c.sampler, c.steps, c.eta, c.seed, c.grid, c.every, c.view), (3.5, SamplerKind::Ddpm, 20, 0.3, 42, 16, 5, View::PredictedX0));
    assert_eq!(c.settings(&DdpmConfig::default(), 0, 16).method, Method::Ddpm { variance: VarianceChoice::Beta });
    let (back, problems) = Controls::parse(&c.to_pairs(), &limits());
    assert!(problems.is_empty());
    assert_eq!(back, c);
    assert!(c.check(&limits()).is_ok());
    let (none, _) = Controls::parse(&pairs("digit=none"), &limits());
    assert_eq!(none.class, ClassChoice::Unconditional);
    assert!(!none.settings(&DdpmConfig::default(), 0, 1).guided());
    // Links from before the sampler control: steps=0 meant DDPM.
    assert_eq!(Controls::parse(&pairs("steps=0"), &limits()).0.sampler, SamplerKind::Ddpm);
}

#[test]
fn out_of_range_values_keep_the_default_and_say_why() {
    let l = limits();
    let d = Controls::defaults(&l);
    for (query, name) in [
        ("steps=1", "steps"),
        ("steps=1001", "steps"),
        ("steps=", "steps"),
        ("steps=2.5", "steps"),
        ("guidance=11", "guidance"),
        ("guidance=NaN", "guidance"),
        ("eta=-0.1", "eta"),
        ("seed=4294967296", "seed"),
        ("seed=-1", "seed"),
        ("count=5", "count"),
        ("every=0", "every"),
        ("digit=10", "digit"),
        ("digit=-1", "digit"),
        ("view=xyz", "view"),
        ("sampler=euler", "sampler"),
    ] {
        let (c, problems) = Controls::parse(&pairs(query), &l);
        assert_eq!(c, d, "{query} changed a control");
        assert_eq!(problems.len(), 1, "{query}: {problems:?}");
        assert!(problems[0].starts_with(name), "{query}: {}", problems[0]);
    }
    // The same rules check typed controls (what the worker receives).
    let mut c = d.clone();
    c.steps = 1;
    assert!(c.check(&l).unwrap_err().contains("steps"));
    c = d.clone();
    c.grid = 5;
    assert!(c.check(&l).is_err());
}

#[test]
fn echoed_values_are_bounded() {
    let huge = "9".repeat(50_000);
    let (_, problems) = Controls::parse(&[("steps".to_string(), huge.clone())], &limits());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].chars().count() < 150, "{} characters", problems[0].chars().count());
    assert!(problems[0].contains('…'));
    assert_eq!(echo("short"), "short");
    assert_eq!(echo(&"é".repeat(ECHO_CHARS + 1)).chars().count(), ECHO_CHARS + 1);
    let parsed = ParsedQuery::parse(&[("backend".to_string(), "x".repeat(10_000))], &limits());
    assert!(parsed.problems[0].chars().count() < 150);
}

#[test]
fn page_options_come_from_the_same_limits() {
    let l = limits();
    let p = ParsedQuery::parse(&pairs("backend=cpu&workers=3&start=1&digit=4"), &l);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!((p.options.backend, p.options.workers, p.options.start), (BackendPreference::Cpu, Some(3), true));
    assert_eq!(p.controls.class, ClassChoice::Digit(4));
    assert!(p.query.iter().any(|(k, v)| k == "digit" && v == "4"));
    let p = ParsedQuery::parse(&pairs("workers=0&backend=tpu"), &l);
    assert_eq!(p.options.workers, None);
    assert_eq!(p.options.backend, BackendPreference::Auto);
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(ParsedQuery::parse(&pairs("workers=17"), &l).problems[0].starts_with("workers"));
}

#[test]
fn messages_survive_serialisation() {
    let l = limits();
    let request = SamplerRequest::Begin { controls: Controls::defaults(&l), first_cell: 2, count: 2, guide_every_step: true };
    let json = serde_json::to_string(&request).unwrap();
    assert!(json.contains(r#""type":"begin""#) && json.contains(r#""kind":"any_digit""#), "{json}");
    match serde_json::from_str::<SamplerRequest>(&json).unwrap() {
        SamplerRequest::Begin { controls, first_cell, count, guide_every_step } => {
            assert_eq!((controls, first_cell, count, guide_every_step), (Controls::defaults(&l), 2, 2, true))
        }
        other => panic!("{other:?}"),
    }
    let digit = serde_json::to_string(&ClassChoice::Digit(7)).unwrap();
    assert_eq!(digit, r#"{"kind":"digit","digit":7}"#);
    let reply = SamplerReply::Failed { message: "x".into() };
    assert!(serde_json::to_string(&reply).unwrap().contains(r#""type":"failed""#));
    let info = BackendInfo { kind: BackendKind::Cpu, adapter: "flex".into(), fallback_reason: None };
    assert_eq!(serde_json::to_string(&info.kind).unwrap(), r#""cpu""#);
    assert_eq!(serde_json::to_string(&BackendKind::WebGpu).unwrap(), r#""webgpu""#);
}

#[test]
fn every_offered_sampler_parses_from_its_name_and_maps_to_its_method() {
    let limits = limits();
    assert_eq!(limits.samplers.iter().map(|s| s.kind).collect::<Vec<_>>(), SamplerKind::ALL.to_vec());
    for choice in &limits.samplers {
        let (c, problems) = Controls::parse(&pairs(&format!("sampler={}&steps=20&eta=0.5", choice.kind.name())), &limits);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.sampler, choice.kind);
        assert_eq!(serde_json::to_value(choice.kind).unwrap(), choice.kind.name(), "the URL name is the serde name");
        let method = c.settings(&DdpmConfig::default(), 0, 1).method;
        let expected = match choice.kind {
            SamplerKind::Ddpm => Method::Ddpm { variance: VarianceChoice::Beta },
            SamplerKind::Ddim => Method::Ddim { steps: 20, eta: 0.5 },
            SamplerKind::DpmSolver2M => Method::DpmSolver2M { steps: 20 },
            SamplerKind::DdpmLearned => Method::Ddpm { variance: VarianceChoice::Learned },
        };
        assert_eq!(method, expected);
        let every_step = matches!(choice.kind, SamplerKind::Ddpm | SamplerKind::DdpmLearned);
        assert_eq!(choice.kind.takes_every_step(), every_step);
        assert_eq!((choice.uses_steps, choice.uses_eta), (!every_step, choice.kind == SamplerKind::Ddim));
        assert!(!choice.label.is_empty() && choice.help.ends_with('.'));
    }
}

#[test]
fn explainer_url_is_read_by_the_same_rules() {
    use ddpm_web::app::controls::ExplainerQuery;
    use ddpm_web::app::protocol::BackendPreference;
    let l = limits();
    let q = ExplainerQuery::parse(&pairs(""), 1000, 10, &l);
    assert_eq!((q.digit, q.t, q.seed, q.backend, q.workers), (0, ExplainerQuery::DEFAULT_T, 1, BackendPreference::Auto, None));
    let q = ExplainerQuery::parse(&pairs("digit=3&t=200&seed=9&backend=cpu&workers=2"), 1000, 10, &l);
    assert_eq!((q.digit, q.t, q.seed, q.backend, q.workers), (3, 200, 9, BackendPreference::Cpu, Some(2)));
    assert!(q.problems.is_empty(), "{:?}", q.problems);
    for (query, name) in [("digit=10", "digit"), ("digit=-1", "digit"), ("t=0", "t"), ("t=1001", "t"), ("t=2.5", "t"), ("seed=x", "seed"), ("workers=0", "workers"), ("backend=tpu", "backend")] {
        let q = ExplainerQuery::parse(&pairs(query), 1000, 10, &l);
        assert_eq!((q.digit, q.t, q.seed), (0, ExplainerQuery::DEFAULT_T, 1), "{query} changed a value");
        assert_eq!(q.problems.len(), 1, "{query}: {:?}", q.problems);
        assert!(q.problems[0].starts_with(name), "{query}: {}", q.problems[0]);
    }
    let long = ExplainerQuery::parse(&pairs(&format!("t={}", "9".repeat(5000))), 1000, 10, &l);
    assert!(long.problems[0].chars().count() < 120, "bounded echo: {}", long.problems[0]);
}
