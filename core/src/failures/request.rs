//! What an operator may ask of a failure run, checked: the request as it comes over HTTP, the
//! five distributions with the paper's parameters, and how a drawn sample picks a viewer (the
//! mapping is documented in the parent module).

use rand::rngs::StdRng;
use rand_distr::{Beta, Binomial, ChiSquared, Distribution as _, Poisson, Uniform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fastest failure rate accepted (per second).
pub const MAX_RATE: f64 = 100.0;
/// Longest run accepted (seconds).
pub const MAX_DURATION_S: f64 = 3600.0;

/// What is wrong with a failure request. The text is the HTTP 400 answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FailureError {
    /// Not one of the five.
    #[error("unknown distribution `{0}`: use uniform, binomial, poisson, beta or chisquared")]
    UnknownDistribution(String),
    /// A parameter the distribution does not take.
    #[error("`{distribution}` takes no parameter `{param}` (it takes: {accepted})")]
    UnknownParam {
        /// The distribution.
        distribution: &'static str,
        /// The offending parameter.
        param: String,
        /// What it takes.
        accepted: &'static str,
    },
    /// A parameter outside its domain.
    #[error("{0}")]
    BadParam(String),
    /// Rate not in (0, MAX_RATE].
    #[error(
        "rate must be a number of failures per second above 0 and at most {MAX_RATE}, got {0}"
    )]
    BadRate(f64),
    /// Duration not in (0, MAX_DURATION_S].
    #[error("duration_s must be above 0 and at most {MAX_DURATION_S}, got {0}")]
    BadDuration(f64),
}

/// A failure run as the operator asks for it (the JSON body of `POST .../failures`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRequest {
    /// `uniform`, `binomial`, `poisson`, `beta` or `chisquared`.
    pub distribution: String,
    /// Overrides of the paper's parameters (`n`, `p`; `mean`; `alpha`, `beta`; `k`).
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// Failures per second.
    pub rate: f64,
    /// Length of the run in seconds.
    pub duration_s: f64,
    /// Seed of the run's RNG; random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Killed viewers join again as new viewers (default true, as in the paper).
    #[serde(default = "yes")]
    pub rejoin: bool,
}

fn yes() -> bool {
    true
}

/// A distribution with its parameters resolved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Distribution {
    /// Uniform over the viewers.
    Uniform,
    /// `k / n` of `n` trials of probability `p`.
    Binomial {
        /// Trials.
        n: u64,
        /// Success probability.
        p: f64,
    },
    /// A count with this mean; `None`: half the viewers at each kill.
    Poisson {
        /// Mean.
        mean: Option<f64>,
    },
    /// Beta(alpha, beta) over [0, 1].
    Beta {
        /// Alpha.
        alpha: f64,
        /// Beta.
        beta: f64,
    },
    /// Chi-squared with `k` degrees of freedom.
    #[serde(rename = "chisquared")]
    ChiSquared {
        /// Degrees of freedom.
        k: f64,
    },
}

/// A validated run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureSpec {
    /// The distribution and its parameters.
    pub distribution: Distribution,
    /// Failures per second.
    pub rate: f64,
    /// Length of the run in milliseconds.
    pub duration_ms: u64,
    /// Seed of the run's RNG.
    pub seed: u64,
    /// Killed viewers join again.
    pub rejoin: bool,
}

impl FailureRequest {
    /// Checks every field; `default_seed` is used when the request names none.
    pub fn validate(&self, default_seed: u64) -> Result<FailureSpec, FailureError> {
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(FailureError::BadRate(self.rate));
        }
        if !(self.duration_s > 0.0 && self.duration_s <= MAX_DURATION_S) {
            return Err(FailureError::BadDuration(self.duration_s));
        }
        Ok(FailureSpec {
            distribution: Distribution::parse(&self.distribution, &self.params)?,
            rate: self.rate,
            duration_ms: (self.duration_s * 1000.0).round() as u64,
            seed: self.seed.unwrap_or(default_seed),
            rejoin: self.rejoin,
        })
    }
}

fn positive(name: &str, v: f64) -> Result<f64, FailureError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(FailureError::BadParam(format!(
            "{name} must be a positive number, got {v}"
        )))
    }
}

impl Distribution {
    /// The distribution named `name` with the paper's parameters, overridden by `params`.
    pub fn parse(name: &str, params: &BTreeMap<String, f64>) -> Result<Self, FailureError> {
        let (canonical, accepted): (&'static str, &'static str) = match name {
            "uniform" => ("uniform", "none"),
            "binomial" => ("binomial", "n, p"),
            "poisson" => ("poisson", "mean"),
            "beta" => ("beta", "alpha, beta"),
            "chisquared" | "chi-squared" | "chi2" => ("chisquared", "k"),
            other => return Err(FailureError::UnknownDistribution(other.to_string())),
        };
        for param in params.keys() {
            if !accepted.split(", ").any(|a| a == param) {
                return Err(FailureError::UnknownParam {
                    distribution: canonical,
                    param: param.clone(),
                    accepted,
                });
            }
        }
        let get = |k: &str, default: f64| params.get(k).copied().unwrap_or(default);
        Ok(match canonical {
            "uniform" => Self::Uniform,
            "binomial" => {
                let n = get("n", 20.0);
                if !(n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= 1e6) {
                    return Err(FailureError::BadParam(format!(
                        "binomial n must be a whole number of trials from 1 to 1000000, got {n}"
                    )));
                }
                let p = get("p", 0.8);
                if !(0.0..=1.0).contains(&p) {
                    return Err(FailureError::BadParam(format!(
                        "binomial p is a probability: it must be between 0 and 1, got {p}"
                    )));
                }
                Self::Binomial { n: n as u64, p }
            }
            "poisson" => Self::Poisson {
                mean: match params.get("mean") {
                    Some(m) => Some(positive("poisson mean", *m)?),
                    None => None,
                },
            },
            "beta" => Self::Beta {
                alpha: positive("beta alpha", get("alpha", 0.5))?,
                beta: positive("beta beta", get("beta", 3.0))?,
            },
            _ => Self::ChiSquared {
                k: positive("chi-squared k (degrees of freedom)", get("k", 5.0))?,
            },
        })
    }

    /// The index (in breadth-first order) of the viewer to kill among `n` (`n` > 0).
    pub fn pick(&self, rng: &mut StdRng, n: usize) -> usize {
        let scaled = |x: f64| (x * n as f64).floor();
        let index = match *self {
            Self::Uniform => scaled(sample(Uniform::new(0.0, 1.0), rng)),
            Self::Binomial { n: trials, p } => {
                let k = Binomial::new(trials, p).map_or(0, |d| d.sample(rng));
                scaled(k as f64 / trials as f64)
            }
            Self::Poisson { mean } => {
                let lambda = mean.unwrap_or(n as f64 / 2.0).max(f64::MIN_POSITIVE);
                sample(Poisson::new(lambda), rng)
            }
            Self::Beta { alpha, beta } => scaled(sample(Beta::new(alpha, beta), rng)),
            Self::ChiSquared { k } => sample(ChiSquared::new(k), rng).floor(),
        };
        // NaN (cannot happen with validated parameters) and negatives land on 0.
        (index.max(0.0) as usize).min(n.saturating_sub(1))
    }
}

/// Draws from a distribution whose construction may fail (it cannot with validated parameters;
/// 0 then).
fn sample<D: rand_distr::Distribution<f64>, E>(d: Result<D, E>, rng: &mut StdRng) -> f64 {
    d.map_or(0.0, |d| d.sample(rng))
}
