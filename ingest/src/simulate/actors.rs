//! The merged request stream: every actor's requests, in event-time order.
//!
//! Every actor (benign user, API client, attacker) is a small state machine with its own
//! ChaCha8 stream (stream `1 + actor index` of the run's seed), so its behaviour does not depend
//! on how actors interleave. [`Requests`] keeps one heap entry per actor, keyed by the actor's
//! next request time (ties broken by actor index), and steps the earliest: memory is bounded by
//! the number of actors, and the stream is in non-decreasing time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::SeedableRng;

use super::attacks::AttackState;
use super::plan::{ClientPlan, Plan};
use super::traffic::{SimRng, secs_us, uniform};
use super::users::{UserState, client_request};
use super::{SimRequest, Simulation};

/// Fixed context shared by all actors of one run.
pub(crate) struct Ctx<'a> {
    pub plan: &'a Plan,
    pub host: &'a str,
    pub start_us: i64,
    /// [`SimConfig::attack_pace`](super::SimConfig::attack_pace).
    pub attack_pace: u32,
}

fn actor_rng(seed: u64, actor: usize) -> SimRng {
    let mut rng = SimRng::seed_from_u64(seed);
    rng.set_stream(actor as u64 + 1);
    rng
}

/// The simulated requests of a [`Simulation`], in non-decreasing timestamp order. Created by
/// [`Simulation::requests`]; every call replays the same stream.
pub struct Requests<'a> {
    ctx: Ctx<'a>,
    end_us: i64,
    actors: Vec<Slot<'a>>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
}

struct Slot<'a> {
    rng: SimRng,
    actor: Actor<'a>,
}

enum Actor<'a> {
    User(UserState<'a>),
    Client(&'a ClientPlan),
    Attack(AttackState<'a>),
}

impl<'a> Requests<'a> {
    pub(crate) fn new(sim: &'a Simulation) -> Requests<'a> {
        let plan = &sim.plan;
        let ctx = Ctx {
            plan,
            host: &sim.cfg.gateway_host,
            start_us: sim.cfg.start_us(),
            attack_pace: sim.cfg.attack_pace,
        };
        let end_us = sim.cfg.end_us();
        let n = plan.users.len() + plan.clients.len() + plan.attacks.len();
        let mut actors = Vec::with_capacity(n);
        let mut heap = BinaryHeap::with_capacity(n);
        let seed = sim.cfg.seed;
        for u in &plan.users {
            let mut rng = actor_rng(seed, actors.len());
            let (state, first) = UserState::new(u, &mut rng, &ctx);
            heap.push(Reverse((first, actors.len() as u32)));
            actors.push(Slot {
                rng,
                actor: Actor::User(state),
            });
        }
        for c in &plan.clients {
            let mut rng = actor_rng(seed, actors.len());
            let first = ctx.start_us + secs_us(uniform(&mut rng, 0.0, c.period_s));
            heap.push(Reverse((first, actors.len() as u32)));
            actors.push(Slot {
                rng,
                actor: Actor::Client(c),
            });
        }
        for a in &plan.attacks {
            let rng = actor_rng(seed, actors.len());
            heap.push(Reverse((a.start_us, actors.len() as u32)));
            actors.push(Slot {
                rng,
                actor: Actor::Attack(AttackState::new(a)),
            });
        }
        heap.retain(|Reverse((t, _))| *t < end_us);
        Requests {
            ctx,
            end_us,
            actors,
            heap,
        }
    }
}

impl std::iter::FusedIterator for Requests<'_> {}

impl Iterator for Requests<'_> {
    type Item = SimRequest;

    fn next(&mut self) -> Option<SimRequest> {
        let Reverse((now, idx)) = self.heap.pop()?;
        let slot = self.actors.get_mut(idx as usize)?;
        let rng = &mut slot.rng;
        let (req, next) = match &mut slot.actor {
            Actor::User(u) => {
                let req = u.step(rng, now, &self.ctx);
                (req, Some(u.schedule(rng, now)))
            }
            Actor::Client(c) => {
                let req = client_request(rng, c, now, &self.ctx);
                let next = now + secs_us(c.period_s * uniform(rng, 0.9, 1.1));
                (req, Some(next))
            }
            Actor::Attack(a) => a.step(rng, now, &self.ctx),
        };
        let limit = match &slot.actor {
            Actor::Attack(a) => a.end_us().min(self.end_us),
            _ => self.end_us,
        };
        if let Some(t) = next {
            // Never schedule into the past, whatever a delay computed.
            let t = t.max(now);
            if t < limit {
                self.heap.push(Reverse((t, idx)));
            }
        }
        Some(req)
    }
}
