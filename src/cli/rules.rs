//! The subtitle rule flags (`--preset`, `--max-chars`, ...), shared by every command that
//! lays out or checks subtitles.

use clap::Args;

use verbatim::subtitle::{Preset, Rules};

use super::error::CliError;

/// Subtitle layout rules: a preset, and single values that override it.
#[derive(Debug, Clone, Default, Args)]
pub struct SubtitleRuleArgs {
    /// Rule preset: netflix (42 chars x 2 lines, 17 chars/s), youtube (42 x 2, 21 chars/s,
    /// 0.5 s minimum) or cjk (16 x 2, 9 chars/s, no spaces between words).
    #[arg(long, value_name = "NAME", value_parser = parse_preset, help_heading = "Subtitle rules")]
    pub preset: Option<Preset>,

    /// Maximum characters per line [default: the preset's, netflix 42, cjk 16].
    #[arg(long, value_name = "N", help_heading = "Subtitle rules")]
    pub max_chars: Option<usize>,

    /// Maximum lines per cue [default: the preset's, 2].
    #[arg(long, value_name = "N", help_heading = "Subtitle rules")]
    pub max_lines: Option<usize>,

    /// Maximum reading speed, characters per second [default: the preset's, netflix 17,
    /// youtube 21, cjk 9].
    #[arg(long, value_name = "CPS", help_heading = "Subtitle rules")]
    pub max_cps: Option<f64>,

    /// Minimum time a cue stays on screen, seconds [default: the preset's, netflix 0.833,
    /// youtube 0.5].
    #[arg(long, value_name = "SECONDS", help_heading = "Subtitle rules")]
    pub min_duration: Option<f64>,

    /// Maximum time a cue stays on screen, seconds [default: the preset's, 7].
    #[arg(long, value_name = "SECONDS", help_heading = "Subtitle rules")]
    pub max_duration: Option<f64>,

    /// Minimum gap between two cues, seconds [default: the preset's, 0.083 = 2 frames at
    /// 24 fps].
    #[arg(long, value_name = "SECONDS", help_heading = "Subtitle rules")]
    pub min_gap: Option<f64>,

    /// Longest silence a cue may stay on screen over, seconds; longer pauses split cues
    /// [default: the preset's, 1.5].
    #[arg(long, value_name = "SECONDS", help_heading = "Subtitle rules")]
    pub max_silence: Option<f64>,

    /// How long a cue stays after its last word when nothing asks for more, seconds
    /// [default: the preset's, netflix 0.5, youtube 0.3].
    #[arg(long, value_name = "SECONDS", help_heading = "Subtitle rules")]
    pub linger: Option<f64>,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::parse(s)
        .ok_or_else(|| format!("unknown preset `{s}` (expected netflix, youtube or cjk)"))
}

impl SubtitleRuleArgs {
    /// The preset's rules with every given value applied, validated (the message names the
    /// flag to fix).
    pub fn rules(&self) -> Result<Rules, CliError> {
        let mut rules = Rules::from(self.preset.unwrap_or(Preset::Netflix));
        if let Some(v) = self.max_chars {
            rules.max_chars_per_line = v;
        }
        if let Some(v) = self.max_lines {
            rules.max_lines = v;
        }
        if let Some(v) = self.max_cps {
            rules.max_cps = v;
        }
        if let Some(v) = self.min_duration {
            rules.min_duration = v;
        }
        if let Some(v) = self.max_duration {
            rules.max_duration = v;
        }
        if let Some(v) = self.min_gap {
            rules.min_gap = v;
        }
        if let Some(v) = self.max_silence {
            rules.max_silence = v;
        }
        if let Some(v) = self.linger {
            rules.linger = v;
        }
        // A preset's linger may exceed a smaller --max-silence: cap it instead of failing.
        if self.linger.is_none() {
            rules.linger = rules.linger.min(rules.max_silence);
        }
        rules
            .validate()
            .map_err(|e| CliError::usage(format!("invalid subtitle rules: {e}")))?;
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_override_the_preset_and_are_validated() {
        let args = SubtitleRuleArgs {
            preset: Some(Preset::Cjk),
            max_cps: Some(12.0),
            ..Default::default()
        };
        let rules = args.rules().unwrap();
        assert_eq!(rules.max_chars_per_line, 16);
        assert_eq!(rules.max_cps, 12.0);
        assert_eq!(
            SubtitleRuleArgs::default().rules().unwrap(),
            Rules::default()
        );
        for bad in [
            SubtitleRuleArgs {
                max_chars: Some(0),
                ..Default::default()
            },
            SubtitleRuleArgs {
                max_cps: Some(-1.0),
                ..Default::default()
            },
            SubtitleRuleArgs {
                min_duration: Some(8.0),
                ..Default::default()
            },
            SubtitleRuleArgs {
                linger: Some(2.0),
                ..Default::default()
            },
        ] {
            assert!(bad.rules().is_err(), "{bad:?}");
        }
        let small = SubtitleRuleArgs {
            max_silence: Some(0.2),
            ..Default::default()
        };
        assert_eq!(small.rules().unwrap().linger, 0.2);
    }
}
