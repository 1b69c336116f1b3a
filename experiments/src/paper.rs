//! What the OwnStream paper prints in its text (section IV.C), to put beside our numbers. Its
//! figures 6-11 show bars and lines without values; only these are stated in words.

/// A statement of the paper about one distribution.
pub(crate) struct PaperNote {
    /// Distribution name as the API spells it.
    pub distribution: &'static str,
    /// Rate (failures/s) the statement is about, if one.
    pub rate: Option<u32>,
    /// Stalled playbacks it states, if any.
    pub stalls: Option<u64>,
    /// Total stalled time it states (s), if any.
    pub stalled_s: Option<f64>,
    /// The statement in words.
    pub text: &'static str,
}

/// Everything the paper's text states about the failure experiments.
pub(crate) const NOTES: &[PaperNote] = &[
    PaperNote {
        distribution: "uniform",
        rate: Some(1),
        stalls: Some(36),
        stalled_s: Some(28.0),
        text: "lowest: 36 stalled playbacks, 28 s total stalled time at 1 failure/s",
    },
    PaperNote {
        distribution: "uniform",
        rate: Some(4),
        stalls: Some(152),
        stalled_s: Some(127.0),
        text: "highest: 152 stalled playbacks, 127 s total stalled time at 4 failures/s; both decrease at 5/s",
    },
    PaperNote {
        distribution: "binomial",
        rate: Some(2),
        stalls: Some(0),
        stalled_s: Some(0.0),
        text: "no stalled playbacks at all at rates 2 and 4; very low compared to uniform",
    },
    PaperNote {
        distribution: "binomial",
        rate: Some(4),
        stalls: Some(0),
        stalled_s: Some(0.0),
        text: "no stalled playbacks at all at rates 2 and 4",
    },
    PaperNote {
        distribution: "poisson",
        rate: None,
        stalls: None,
        stalled_s: None,
        text: "similar in shape to uniform, much lower stalled playbacks and stalled time (no values printed)",
    },
    PaperNote {
        distribution: "beta",
        rate: None,
        stalls: None,
        stalled_s: None,
        text: "the largest stalled playbacks and total stalled time of all distributions; the only one whose average stalled time goes well above 1 s (no values printed)",
    },
    PaperNote {
        distribution: "chisquared",
        rate: None,
        stalls: None,
        stalled_s: None,
        text: "very similar to binomial (no values printed)",
    },
];

/// The paper's statement for a cell, if it makes one.
pub(crate) fn note(distribution: &str, rate: u32) -> Option<&'static PaperNote> {
    NOTES
        .iter()
        .find(|n| n.distribution == distribution && n.rate == Some(rate))
}
