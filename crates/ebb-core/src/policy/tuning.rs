//! The SLO model's constants: not part of the policy document (users state an SLO, not these),
//! fitted once on the first half of the shared traces and carried with the policy so that
//! `ebb simulate --slo-tuning` and `ebb tune` can vary them.

/// The signal's constants (a `Tuning::parse` spelling: `hedge=1,rateMargin=0.5`). Their
/// defaults were chosen on the first half of the shared traces and the synthetic patterns
/// (see docs/results.md); the results page reports the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Time constant of the rate level, seconds.
    pub level_seconds: f64,
    /// Requests the level averages over at least (see `slo::forecast::Smoothing::level_requests`).
    pub level_requests: f64,
    /// Requests the short window must hold before a jump counts (or a trend is dropped as
    /// contradicted: `slo::forecast::Forecaster::drop_contradicted_trend`).
    pub jump_requests: f64,
    /// Time constant of the rate trend, seconds.
    pub trend_seconds: f64,
    /// Weight of a closed bucket in the seasonal component.
    pub season_weight: f64,
    /// Standard errors of the level's estimate added to the planned rate.
    pub rate_margin: f64,
    /// Standard errors by which the short-window rate must exceed the level to count as a jump,
    /// and by which it must stand on the far side of the level from the trend for the trend to
    /// be dropped.
    pub jump_threshold: f64,
    /// Standard deviations of the measured cold start added to its mean for the horizon.
    pub cold_start_spread: f64,
    /// How many cold starts a replica is kept through a dip (the ski-rental rule's break-even
    /// time: restarting it costs a cold start, hedged starts included, and the SLO risk of
    /// the wait).
    pub keep_cold_starts: f64,
    /// The least share of the allowed misses (`1 - attainment`) that waiting may add. Where
    /// service times alone come close to the SLO (or miss it), the target is lowered by this
    /// much rather than bought with replicas that cannot help.
    pub min_wait_budget: f64,
    /// The share of the waiting budget (what the plan lets waiting add to the misses) that
    /// requests arriving at zero after an idle spell may spend, for a policy that may scale
    /// to zero (`slo::idle`). The rest is the queues'.
    pub idle_budget: f64,
    /// The fewest extra replicas started per missing ready replica while capacity is short,
    /// from the second short decision in a row (the first starts only the extras its priced
    /// shortage is worth, so a one-second clump does not start hedges removed a second
    /// later). Cold starts vary (image pulls, node placement, model load); of `k + e` replicas
    /// started, the fastest `k` are ready well before the slowest of `k` would be. The extras
    /// are still starting when enough are ready and are removed first (the victim ranking
    /// takes unready pods first), so they cost part of one cold start each. A shortage that
    /// misses far more requests than the last replica needed avoids starts more
    /// (`slo::hedge`).
    pub hedge: f64,
    /// Standard deviations of the measured cold start, beyond `cold_start_spread`, by which
    /// replicas for a recurring burst are started early: the burst's time is known, so a slow
    /// cold start is the only reason to miss it, and a few replica-seconds buy it off.
    pub prewarm_spread: f64,
    /// The share of a period's allowed misses (`1 - attainment` of its arrivals) that the
    /// first cold start of a recurring burst may spend: the replicas that keep within it are
    /// started ahead of the burst. The rest is left to waiting elsewhere in the period.
    pub prewarm_budget: f64,
    /// Mean service times the level's time constant spans at least. A replica stays busy for
    /// a service time, so the arrivals that size it are those of the last service time: a
    /// 10 s window on requests that take 35 s reads each arrival as a burst.
    pub level_service_times: f64,
    /// Mean service times the lead may span for the plan to size over it from the requests
    /// in flight (`slo::transient`) rather than for the steady state; 0 never does.
    pub transient_service_times: f64,
    /// Weight, in request-seconds of predicted waiting, of the dispersion of counts as the
    /// arrivals' `ca^2` before the queues seen correct it (see
    /// `slo::estimate::SloState::calibrated_scv`).
    pub queue_prior: f64,
    /// Time constant over which the requests seen waiting are compared with the model's
    /// prediction, seconds.
    pub queue_seconds: f64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            level_seconds: 10.0,
            level_requests: 0.0,
            jump_requests: 5.0,
            trend_seconds: 30.0,
            season_weight: 0.3,
            rate_margin: 0.0,
            jump_threshold: 3.0,
            cold_start_spread: 1.0,
            keep_cold_starts: 1.0,
            hedge: 1.0,
            min_wait_budget: 0.5,
            idle_budget: 0.5,
            prewarm_spread: 1.0,
            prewarm_budget: 0.5,
            level_service_times: 1.0,
            transient_service_times: 5.0,
            queue_prior: 3.0,
            queue_seconds: 1800.0,
        }
    }
}

impl Tuning {
    /// Applies `name=value` pairs separated by commas (for `ebb simulate --slo-tuning` and
    /// `ebb tune`'s search).
    pub fn parse(mut self, text: &str) -> Result<Tuning, String> {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not name=value"))?;
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("'{value}' is not a number in '{pair}'"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(format!("'{pair}': must be a finite number, 0 or more"));
            }
            let field = match name.trim() {
                "levelSeconds" => &mut self.level_seconds,
                "levelRequests" => &mut self.level_requests,
                "jumpRequests" => &mut self.jump_requests,
                "trendSeconds" => &mut self.trend_seconds,
                "seasonWeight" => &mut self.season_weight,
                "rateMargin" => &mut self.rate_margin,
                "jumpThreshold" => &mut self.jump_threshold,
                "coldStartSpread" => &mut self.cold_start_spread,
                "keepColdStarts" => &mut self.keep_cold_starts,
                "hedge" => &mut self.hedge,
                "minWaitBudget" => &mut self.min_wait_budget,
                "idleBudget" => &mut self.idle_budget,
                "prewarmSpread" => &mut self.prewarm_spread,
                "prewarmBudget" => &mut self.prewarm_budget,
                "levelServiceTimes" => &mut self.level_service_times,
                "transientServiceTimes" => &mut self.transient_service_times,
                "queuePrior" => &mut self.queue_prior,
                "queueSeconds" => &mut self.queue_seconds,
                other => return Err(format!("unknown constant '{other}'")),
            };
            *field = v;
        }
        if self.level_seconds <= 0.0 || self.trend_seconds <= 0.0 {
            return Err("levelSeconds and trendSeconds must be above 0".into());
        }
        Ok(self)
    }
}
