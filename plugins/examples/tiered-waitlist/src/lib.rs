//! Reference waitlist plugin: priority tiers, then first come, first served.
//!
//! Waiting users are ordered by their `tier` attribute (`vip` first, then `member`, then everyone
//! else), and by join order within a tier. Offers go down that order while the freed seats last and
//! stop at the first entry that wants more seats than are left, so nobody is overtaken by someone
//! behind them in the same order.

use evently_plugin_sdk::waitlist::{
    attribute, take_while_fits, Guest, OfferRequest, PolicyError, WaitingEntry,
};

/// Lower ranks are served first.
fn rank(entry: &WaitingEntry) -> u8 {
    match attribute(&entry.attributes, "tier") {
        Some("vip") => 0,
        Some("member") => 1,
        _ => 2,
    }
}

struct TieredWaitlist;

impl Guest for TieredWaitlist {
    fn choose(req: OfferRequest) -> Result<Vec<u32>, PolicyError> {
        let mut order: Vec<u32> = (0..req.waiting.len() as u32).collect();
        // Stable: join order is kept within a tier.
        order.sort_by_key(|&i| {
            let e = &req.waiting[i as usize];
            (rank(e), e.position)
        });
        Ok(take_while_fits(&req, order))
    }
}

evently_plugin_sdk::export_waitlist!(TieredWaitlist);
