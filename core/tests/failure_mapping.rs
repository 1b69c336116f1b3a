//! The mapping of each distribution's samples onto viewers (breadth-first order), with the
//! paper's parameters as defaults, validation errors in plain words, and reproducibility by seed
//! (known answers pinned).

use ownstream_core::failures::{Distribution, FailureError, FailureRequest};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;

fn dist(name: &str, params: &[(&str, f64)]) -> Result<Distribution, FailureError> {
    let params = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Distribution::parse(name, &params)
}

#[test]
fn the_papers_parameters_are_the_defaults() {
    assert_eq!(
        dist("binomial", &[]).unwrap(),
        Distribution::Binomial { n: 20, p: 0.8 }
    );
    assert_eq!(
        dist("beta", &[]).unwrap(),
        Distribution::Beta {
            alpha: 0.5,
            beta: 3.0
        }
    );
    assert_eq!(
        dist("chisquared", &[]).unwrap(),
        Distribution::ChiSquared { k: 5.0 }
    );
    assert_eq!(
        dist("poisson", &[]).unwrap(),
        Distribution::Poisson { mean: None }
    );
    assert_eq!(
        dist("binomial", &[("p", 0.5)]).unwrap(),
        Distribution::Binomial { n: 20, p: 0.5 }
    );
}

#[test]
fn bad_parameters_say_what_is_wrong() {
    let e = dist("gaussian", &[]).unwrap_err().to_string();
    assert!(e.contains("unknown distribution `gaussian`"), "{e}");
    let e = dist("binomial", &[("p", 1.5)]).unwrap_err().to_string();
    assert!(e.contains("between 0 and 1"), "{e}");
    let e = dist("binomial", &[("p", -0.1)]).unwrap_err().to_string();
    assert!(e.contains("between 0 and 1"), "{e}");
    let e = dist("binomial", &[("n", 2.5)]).unwrap_err().to_string();
    assert!(e.contains("whole number"), "{e}");
    let e = dist("beta", &[("alpha", 0.0)]).unwrap_err().to_string();
    assert!(e.contains("positive"), "{e}");
    let e = dist("uniform", &[("p", 0.2)]).unwrap_err().to_string();
    assert!(e.contains("takes no parameter `p`"), "{e}");
    let req = |rate: f64, duration_s: f64| FailureRequest {
        distribution: "uniform".into(),
        params: BTreeMap::new(),
        rate,
        duration_s,
        seed: None,
        rejoin: true,
    };
    assert_eq!(
        req(-1.0, 10.0).validate(1),
        Err(FailureError::BadRate(-1.0))
    );
    assert_eq!(req(0.0, 10.0).validate(1), Err(FailureError::BadRate(0.0)));
    assert!(matches!(
        req(f64::NAN, 10.0).validate(1),
        Err(FailureError::BadRate(_))
    ));
    assert_eq!(
        req(2.0, 0.0).validate(1),
        Err(FailureError::BadDuration(0.0))
    );
    assert_eq!(req(2.0, 10.0).validate(7).unwrap().seed, 7);
}

/// Mean index of 4000 picks among `n` viewers.
fn mean_pick(d: Distribution, n: usize) -> f64 {
    let mut rng = StdRng::seed_from_u64(42);
    let picks: Vec<usize> = (0..4000).map(|_| d.pick(&mut rng, n)).collect();
    assert!(picks.iter().all(|i| *i < n));
    picks.iter().sum::<usize>() as f64 / picks.len() as f64
}

#[test]
fn each_distribution_lands_where_the_mapping_says() {
    let n = 80;
    // uniform: the middle of the order on average
    let u = mean_pick(dist("uniform", &[]).unwrap(), n);
    assert!((u - 39.5).abs() < 2.0, "{u}");
    // binomial(20, 0.8): k/20 averages 0.8, so 80% down the order
    let b = mean_pick(dist("binomial", &[]).unwrap(), n);
    assert!((b - 0.8 * 80.0).abs() < 2.0, "{b}");
    // poisson(mean n/2): the index itself, centred on 40
    let p = mean_pick(dist("poisson", &[]).unwrap(), n);
    assert!((p - 40.0).abs() < 1.0, "{p}");
    // beta(0.5, 3): mean 1/7 of the order, near the root
    let be = mean_pick(dist("beta", &[]).unwrap(), n);
    assert!((be - 80.0 / 7.0).abs() < 1.5, "{be}");
    // chi-squared(5): mean 5, floored: about 4.5
    let c = mean_pick(dist("chisquared", &[]).unwrap(), n);
    assert!((c - 4.5).abs() < 0.5, "{c}");
}

#[test]
fn a_seed_makes_picks_reproducible_and_indices_stay_in_range() {
    for name in ["uniform", "binomial", "poisson", "beta", "chisquared"] {
        let d = dist(name, &[]).unwrap();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50).map(|_| d.pick(&mut rng, 7)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7), "{name}");
        assert!(run(7).iter().all(|i| *i < 7), "{name}");
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(d.pick(&mut rng, 1), 0, "{name}: one viewer");
    }
    // Known answers: the first picks of seed 7 among 15 viewers, pinned so that a change of
    // mapping or of RNG shows.
    let first = |name: &str| {
        let d = dist(name, &[]).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let mut out = [0; 6];
        out.iter_mut().for_each(|o| *o = d.pick(&mut rng, 15));
        out
    };
    for (name, expected) in KNOWN_PICKS {
        assert_eq!(first(name), expected, "{name}");
    }
}

const KNOWN_PICKS: [(&str, [usize; 6]); 5] = [
    ("uniform", [0, 4, 2, 8, 4, 14]),
    ("binomial", [14, 12, 13, 12, 12, 9]),
    ("poisson", [4, 6, 9, 6, 6, 8]),
    ("beta", [0, 0, 2, 3, 2, 3]),
    ("chisquared", [1, 2, 2, 2, 2, 5]),
];
