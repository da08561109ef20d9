//! Stage plans: which rungs a query climbs through, how many candidates each stage keeps, and
//! how the first stage finds its shortlist.

use crate::error::{Error, Result};
use barista_index::Rung;
use serde::{Deserialize, Serialize};

/// How the first stage finds its candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Shortlist {
    /// The HNSW graphs on the stage's rung (one of the index's graph rungs), with this
    /// candidate list size; segments without a graph there, or small enough that a scan costs
    /// less, are scanned.
    Graph {
        /// HNSW `ef` (at least the number of candidates kept).
        ef: usize,
    },
    /// An exhaustive scan of the rung (split over the query threads).
    Scan,
}

/// One stage of a cascade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stage {
    /// The rung this stage scores at.
    pub rung: Rung,
    /// Candidates kept after this stage (the last stage keeps the request's `k`).
    pub keep: usize,
    /// For the first stage: how candidates are found (default: the graph when the rung has
    /// one and the index is large, else a scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortlist: Option<Shortlist>,
}

/// What a plan is checked against.
#[derive(Clone, Debug)]
pub struct IndexShape {
    /// Stored rungs, smallest first.
    pub rungs: Vec<Rung>,
    /// The rungs HNSW graphs are built on, smallest first.
    pub graph_rungs: Vec<Rung>,
    /// Live documents.
    pub docs: u64,
}

/// Named plans.
pub const PROFILES: &[&str] = &["fast", "balanced", "exact"];

/// Below this many documents the profiles shortlist by an exhaustive scan of a small rung
/// rather than the HNSW graph. Measured only at 50,000 documents so far (there a scan beats the
/// graph at the generous shortlists 2D cascades need, see BENCHMARKS.md); the switch point
/// itself is an estimate from how both costs grow, not yet a measurement.
pub const SCAN_BELOW_DOCS: u64 = 200_000;

/// `balanced`'s cuts when it shortlists through the graph: candidates kept after the graph
/// rung, then after each larger rung but the last (which keeps `k`).
pub const GRAPH_BALANCED: &[usize] = &[1000, 300, 100];

/// `fast`'s shortlist when it goes through the graph.
pub const GRAPH_FAST: usize = 300;

/// `balanced`'s `ef` when the graph is on the largest rung: the walk looks for the final top
/// `k` itself, nothing is rescored. Measured on SciFact's training queries over 300,000
/// passages of the shared model: 0.991 of the exhaustive top 10 at 0.03× its search time
/// (BENCHMARKS.md, "Millions of documents").
pub const GRAPH_FINAL_BALANCED: usize = 100;

/// `fast`'s `ef` when the graph is on the largest rung (0.977 of the exhaustive top 10 at
/// 0.02× on the same measurement).
pub const GRAPH_FINAL_FAST: usize = 50;

/// A plan: the stages in order. The last stage's `keep` is the number of hits returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    /// The stages, coarse to fine.
    pub stages: Vec<Stage>,
}

impl StagePlan {
    /// The named profile `name` for an index of this shape, returning `k` hits.
    ///
    /// - `exact`: an exhaustive scan at the largest rung — the quality reference.
    /// - `balanced`: a generous shortlist, then every larger rung in turn with gentle cuts (each
    ///   rung is also a point where adaptive stopping can end the query).
    /// - `fast`: a smaller shortlist, then straight to the largest rung.
    ///
    /// Below [`SCAN_BELOW_DOCS`] documents (or without a graph) the shortlist is an exhaustive
    /// scan: for `balanced` of the third-largest rung (1,500 candidates, then 500 at the
    /// second-largest rung: the small rungs of 2D Matryoshka models are weak and would need far
    /// longer shortlists), for `fast` of the middle rung (1,000 candidates). Above, an HNSW
    /// search on the smallest graph rung, whose cost grows with the logarithm of the index:
    /// `balanced` keeps [`GRAPH_BALANCED`] candidates through the larger rungs, `fast`
    /// [`GRAPH_FAST`] straight to the largest. When that graph rung is the largest rung (the
    /// default), the walk finds the top `k` itself with `ef` [`GRAPH_FINAL_BALANCED`] or
    /// [`GRAPH_FINAL_FAST`] (constants measured on SciFact's training queries over 300,000
    /// passages, see BENCHMARKS.md). Such a one-stage plan has no rung to stop at: adaptive
    /// stopping and overlapping the walk with encoding apply only to plans that climb
    /// (`barista calibrate` refuses it, and a stop rule fitted while the index was smaller no
    /// longer matches the plan, so it is not used).
    pub fn profile(name: &str, shape: &IndexShape, k: usize) -> Result<StagePlan> {
        let largest = *shape.rungs.last().ok_or_else(|| Error::InvalidRequest("the index stores no rungs".into()))?;
        let k = k.max(1);
        let graph_rung = shape.graph_rungs.first().copied().filter(|_| shape.docs >= SCAN_BELOW_DOCS);
        let graph = graph_rung.is_some();
        let start = match graph_rung {
            Some(g) => shape.rungs.iter().position(|r| *r == g).unwrap_or(0),
            None => (shape.rungs.len() - 1) / 2,
        };
        let climb = &shape.rungs[start..];
        let balanced_start = if graph { start } else { shape.rungs.len().saturating_sub(3) };
        let shortlist = |keep: usize| if graph { Shortlist::Graph { ef: keep } } else { Shortlist::Scan };
        let stages = match name {
            "exact" => vec![Stage { rung: largest, keep: k, shortlist: Some(Shortlist::Scan) }],
            "balanced" | "fast" if graph_rung == Some(largest) => {
                let ef = if name == "fast" { GRAPH_FINAL_FAST } else { GRAPH_FINAL_BALANCED };
                vec![Stage { rung: largest, keep: k, shortlist: Some(Shortlist::Graph { ef: ef.max(k) }) }]
            }
            "balanced" => {
                let climb = &shape.rungs[balanced_start..];
                climb
                    .iter()
                    .enumerate()
                    .map(|(i, &rung)| {
                        let keep = match (graph, climb.len() - 1 - i) {
                            (_, 0) => k,
                            (true, _) => GRAPH_BALANCED[i.min(GRAPH_BALANCED.len() - 1)].max(k),
                            (false, 1) => 500.max(k),
                            (false, _) => 1500.max(k),
                        };
                        Stage { rung, keep, shortlist: (i == 0).then(|| shortlist(keep)) }
                    })
                    .collect()
            }
            "fast" => {
                let first = if graph { GRAPH_FAST } else { 1000 }.max(k);
                let mut stages = vec![Stage { rung: climb[0], keep: first, shortlist: Some(shortlist(first)) }];
                if climb[0] != largest {
                    stages.push(Stage { rung: largest, keep: k, shortlist: None });
                } else {
                    stages[0].keep = k;
                }
                stages
            }
            other => {
                return Err(Error::InvalidRequest(format!(
                    "unknown profile '{other}': choose one of {}",
                    PROFILES.join(", ")
                )));
            }
        };
        let plan = StagePlan { stages };
        plan.validate(shape)?;
        Ok(plan)
    }

    /// Checks a plan (named or explicit) against the index.
    pub fn validate(&self, shape: &IndexShape) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        let Some(first) = self.stages.first() else { return bad("a plan needs at least one stage".into()) };
        for (i, stage) in self.stages.iter().enumerate() {
            if !shape.rungs.contains(&stage.rung) {
                let stored: Vec<String> = shape.rungs.iter().map(Rung::to_string).collect();
                return bad(format!(
                    "stage {i} uses rung {}, which the index does not store ({})",
                    stage.rung,
                    stored.join(" ")
                ));
            }
            if stage.keep == 0 {
                return bad(format!("stage {i} keeps no candidates"));
            }
            if i > 0 && stage.shortlist.is_some() {
                return bad(format!("only the first stage finds candidates; stage {i} rescores them"));
            }
        }
        for (i, pair) in self.stages.windows(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            if b.rung == a.rung || b.rung.layer < a.rung.layer || b.rung.dim < a.rung.dim {
                return bad(format!(
                    "stages must climb to larger rungs, but stage {} ({}) follows {}",
                    i + 1,
                    b.rung,
                    a.rung
                ));
            }
            if b.keep > a.keep {
                return bad(format!("stage {} keeps {} candidates but receives only {}", i + 1, b.keep, a.keep));
            }
        }
        if let Some(Shortlist::Graph { ef }) = first.shortlist {
            if !shape.graph_rungs.contains(&first.rung) {
                let rungs: Vec<String> = shape.graph_rungs.iter().map(Rung::to_string).collect();
                return bad(format!(
                    "the index has graphs on {}, not on {}: use a scan or start at a graph rung",
                    if rungs.is_empty() { "no rung".to_string() } else { rungs.join(" ") },
                    first.rung
                ));
            }
            if ef == 0 {
                return bad("ef must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The first stage's shortlist method (with the default resolved).
    pub fn shortlist(&self, shape: &IndexShape) -> Shortlist {
        let first = &self.stages[0];
        first.shortlist.unwrap_or(if shape.graph_rungs.contains(&first.rung) && shape.docs >= SCAN_BELOW_DOCS {
            Shortlist::Graph { ef: first.keep }
        } else {
            Shortlist::Scan
        })
    }

    /// Parses a plan written as `L,D:KEEP[:graph=EF|:scan] L,D:KEEP …`.
    pub fn parse(text: &str) -> Result<StagePlan, String> {
        let mut stages = Vec::new();
        for (i, part) in text.split_whitespace().enumerate() {
            let mut fields = part.split(':');
            let rung: Rung = fields.next().unwrap_or_default().parse()?;
            let keep = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("stage '{part}': write LAYER,DIM:KEEP, for example 4,128:1500"))?;
            let shortlist = match fields.next() {
                None => None,
                Some("scan") => Some(Shortlist::Scan),
                Some(g) if g.starts_with("graph=") => {
                    let ef =
                        g["graph=".len()..].parse().map_err(|_| format!("stage '{part}': graph=EF needs a number"))?;
                    Some(Shortlist::Graph { ef })
                }
                Some(other) => {
                    return Err(format!("stage '{part}': unknown shortlist '{other}' (use scan or graph=EF)"));
                }
            };
            if i > 0 && shortlist.is_some() {
                return Err(format!("stage '{part}': only the first stage can have a shortlist method"));
            }
            stages.push(Stage { rung, keep, shortlist });
        }
        if stages.is_empty() {
            return Err("an empty plan".into());
        }
        Ok(StagePlan { stages })
    }
}

impl std::fmt::Display for StagePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.stages.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{},{}:{}", s.rung.layer, s.rung.dim, s.keep)?;
            match s.shortlist {
                Some(Shortlist::Scan) => f.write_str(":scan")?,
                Some(Shortlist::Graph { ef }) => write!(f, ":graph={ef}")?,
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(docs: u64) -> IndexShape {
        IndexShape {
            rungs: [(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)].iter().map(|&r| r.into()).collect(),
            graph_rungs: vec![Rung::new(3, 96)],
            docs,
        }
    }

    #[test]
    fn profiles_climb_from_a_scan_or_the_graph() {
        let b = StagePlan::profile("balanced", &shape(50_000), 10).unwrap();
        assert_eq!(b.to_string(), "4,128:1500:scan 5,256:500 6,384:10");
        let big = StagePlan::profile("balanced", &shape(5_000_000), 10).unwrap();
        assert_eq!(big.to_string(), "3,96:1000:graph=1000 4,128:300 5,256:100 6,384:10");
        let e = StagePlan::profile("exact", &shape(10), 7).unwrap();
        assert_eq!(e.stages, vec![Stage { rung: Rung::new(6, 384), keep: 7, shortlist: Some(Shortlist::Scan) }]);
        assert_eq!(StagePlan::profile("fast", &shape(50_000), 10).unwrap().to_string(), "3,96:1000:scan 6,384:10");
        assert_eq!(
            StagePlan::profile("fast", &shape(5_000_000), 10).unwrap().to_string(),
            "3,96:300:graph=300 6,384:10"
        );
        // Large k: every cut keeps at least k.
        let wide = StagePlan::profile("balanced", &shape(50_000), 2000).unwrap();
        assert!(wide.stages.iter().all(|s| s.keep >= 2000));
        assert!(StagePlan::profile("slow", &shape(1), 10).unwrap_err().to_string().contains("fast, balanced, exact"));
    }

    #[test]
    fn a_graph_on_the_largest_rung_finds_the_top_k_itself() {
        let mut s = shape(5_000_000);
        s.graph_rungs = vec![Rung::new(6, 384)];
        assert_eq!(StagePlan::profile("balanced", &s, 10).unwrap().to_string(), "6,384:10:graph=100");
        assert_eq!(StagePlan::profile("fast", &s, 10).unwrap().to_string(), "6,384:10:graph=50");
        assert_eq!(StagePlan::profile("fast", &s, 80).unwrap().to_string(), "6,384:80:graph=80");
        assert_eq!(StagePlan::profile("exact", &s, 10).unwrap().to_string(), "6,384:10:scan");
        // Below the graph threshold the profiles scan, as before.
        s.docs = 50_000;
        assert_eq!(StagePlan::profile("balanced", &s, 10).unwrap().to_string(), "4,128:1500:scan 5,256:500 6,384:10");
        // With two graph rungs the smallest carries the shortlist.
        s.docs = 5_000_000;
        s.graph_rungs = vec![Rung::new(5, 256), Rung::new(6, 384)];
        assert_eq!(StagePlan::profile("balanced", &s, 10).unwrap().to_string(), "5,256:1000:graph=1000 6,384:10");
    }

    #[test]
    fn explicit_plans_are_parsed_and_checked() {
        let s = shape(1000);
        let p = StagePlan::parse("3,96:2000:graph=4000 6,384:10").unwrap();
        assert_eq!(p.stages[0].shortlist, Some(Shortlist::Graph { ef: 4000 }));
        p.validate(&s).unwrap();
        assert_eq!(StagePlan::parse(&p.to_string()).unwrap(), p);
        for (plan, message) in [
            ("3,96:100 2,64:10", "climb"),
            ("3,96:100 4,128:200", "receives only"),
            ("7,96:10", "does not store"),
            ("2,64:10:graph=100", "graphs on (3,96), not on (2,64)"),
            ("3,96:0", "keeps no candidates"),
        ] {
            let err = StagePlan::parse(plan).unwrap().validate(&s).unwrap_err().to_string();
            assert!(err.contains(message), "{plan}: {err}");
        }
        assert!(StagePlan::parse("3,96").is_err());
        assert!(StagePlan::parse("3,96:10 4,128:5:scan").is_err());
        assert!(StagePlan::parse("").is_err());
    }
}
