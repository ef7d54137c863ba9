//! `nexmark`: Person, Auction and Bid events following the rules of the Nexmark generator.
//!
//! Event `i` (its event id) is a person, an auction or a bid by `i mod 50` (1 : 3 : 46). Ids are
//! dense per kind and start at 1000; bids mostly go to a "hot" auction and come from "hot"
//! bidders; auctions mostly have "hot" sellers; prices are log-uniform between $1 and $1M. Each
//! event draws its choices from a `java.util.Random` seeded with `i ^ (seed * GOLDEN_GAMMA)`
//! (`seed = 0` gives the classic `new Random(eventId)` seeding), in the same order as the
//! reference generator, so an event depends only on `(seed, i)`.
//!
//! Deliberate differences from the reference generator (see `docs/generators.md`): no
//! out-of-order groups and no wall-clock base time (event time is `base_time_ms + i * 1000 /
//! event_rate`, integer division, so it never decreases with `i`); `10^x` in prices is computed by
//! [`portable_math::exp10`](super::portable_math::exp10) so Rust and Java agree bit for bit; the
//! filler `extra` strings use only `a..z`; bids have no `channel`/`url` columns.

use super::java_random::JavaRandom;
use super::portable_math::{exp10, round_half_up};
use super::splitmix::GOLDEN_GAMMA;

/// Persons per 50 events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per 50 events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per 50 events.
pub const BID_PROPORTION: u64 = 46;
/// Events per proportion cycle.
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// First person id.
pub const FIRST_PERSON_ID: i64 = 1000;
/// First auction id.
pub const FIRST_AUCTION_ID: i64 = 1000;
/// First category id.
pub const FIRST_CATEGORY_ID: i64 = 10;
/// Number of categories.
pub const NUM_CATEGORIES: i32 = 5;
/// Auctions considered in flight when a bid picks a non-hot auction.
pub const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
/// People considered active when a bid or auction picks a non-hot person.
pub const NUM_ACTIVE_PEOPLE: i64 = 1000;
/// Ids past the last generated one that a random pick may reach.
pub const ID_LEAD: i64 = 10;
/// A bid is for the hot auction unless `nextInt(HOT_AUCTION_RATIO) == 0`.
pub const HOT_AUCTION_RATIO: i32 = 2;
/// An auction has a hot seller unless `nextInt(HOT_SELLERS_RATIO) == 0`.
pub const HOT_SELLERS_RATIO: i32 = 4;
/// A bid has a hot bidder unless `nextInt(HOT_BIDDERS_RATIO) == 0`.
pub const HOT_BIDDERS_RATIO: i32 = 4;
/// Hot ids are the first (sellers, auctions) or second (bidders) of each batch of this many.
pub const HOT_BATCH: i64 = 100;
/// Average encoded sizes that the `extra` filler strings pad events towards.
pub const AVG_PERSON_BYTES: i32 = 200;
/// See [`AVG_PERSON_BYTES`].
pub const AVG_AUCTION_BYTES: i32 = 500;
/// See [`AVG_PERSON_BYTES`].
pub const AVG_BID_BYTES: i32 = 100;
/// Default event time of event 0: 2015-07-15T00:00:00Z.
pub const DEFAULT_BASE_TIME_MS: i64 = 1_436_918_400_000;
/// Default event-time rate: 10,000 events per second, Nexmark's default first event rate.
pub const DEFAULT_EVENT_RATE: u64 = 10_000;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Which kind of event an index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A new person.
    Person,
    /// A new auction.
    Auction,
    /// A bid on an auction.
    Bid,
}

/// A new person registering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: &'static str,
    pub state: &'static str,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    pub extra: String,
}

/// A new auction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auction {
    pub id: i64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: i64,
    pub reserve: i64,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// When the auction closes, ms since the epoch.
    pub expires: i64,
    pub seller: i64,
    pub category: i64,
    pub extra: String,
}

/// A bid. Plain old data so that bid-only queries allocate nothing; the filler string is
/// available through [`NexmarkConfig::bid_with_extra`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Bid {
    pub auction: i64,
    pub bidder: i64,
    /// Price in cents.
    pub price: i64,
    /// Event time, ms since the epoch.
    pub date_time: i64,
}

/// Any Nexmark event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexmarkEvent {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

/// Parameters of a Nexmark stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Seed; 0 reproduces the reference seeding `new Random(eventId)`.
    pub seed: u64,
    /// Events per second of event time (all kinds together); 0 is treated as 1.
    pub event_rate: u64,
    /// Event time of event 0, ms since the epoch.
    pub base_time_ms: i64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            event_rate: DEFAULT_EVENT_RATE,
            base_time_ms: DEFAULT_BASE_TIME_MS,
        }
    }
}

impl NexmarkConfig {
    /// The kind of event `index`: by `index mod 50`, 0 is a person, 1-3 an auction, else a bid.
    #[inline]
    pub fn event_kind(index: u64) -> EventKind {
        let rem = index % TOTAL_PROPORTION;
        if rem < PERSON_PROPORTION {
            EventKind::Person
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// Event time of event `index`: `base_time_ms + index * 1000 / event_rate`.
    #[inline]
    pub fn timestamp(&self, index: u64) -> i64 {
        let rate = u128::from(self.event_rate.max(1));
        let offset = u128::from(index) * 1000 / rate;
        self.base_time_ms
            .wrapping_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    fn random(&self, index: u64) -> JavaRandom {
        JavaRandom::new((index ^ self.seed.wrapping_mul(GOLDEN_GAMMA)) as i64)
    }

    /// Event `index`, whatever its kind.
    pub fn event(&self, index: u64) -> NexmarkEvent {
        match Self::event_kind(index) {
            EventKind::Person => NexmarkEvent::Person(self.make_person(index)),
            EventKind::Auction => NexmarkEvent::Auction(self.make_auction(index)),
            EventKind::Bid => NexmarkEvent::Bid(self.make_bid(index, &mut self.random(index))),
        }
    }

    /// Event `index` if it is a bid: the fast path of bid-only queries, allocation-free.
    #[inline]
    pub fn bid(&self, index: u64) -> Option<Bid> {
        (Self::event_kind(index) == EventKind::Bid)
            .then(|| self.make_bid(index, &mut self.random(index)))
    }

    /// Like [`NexmarkConfig::bid`], also appending the bid's `extra` filler to `extra`.
    pub fn bid_with_extra(&self, index: u64, extra: &mut String) -> Option<Bid> {
        if Self::event_kind(index) != EventKind::Bid {
            return None;
        }
        let mut rnd = self.random(index);
        let bid = self.make_bid(index, &mut rnd);
        next_extra(&mut rnd, 32, AVG_BID_BYTES, extra);
        Some(bid)
    }

    /// Event `index` if it is a person.
    pub fn person(&self, index: u64) -> Option<Person> {
        (Self::event_kind(index) == EventKind::Person).then(|| self.make_person(index))
    }

    /// Event `index` if it is an auction.
    pub fn auction(&self, index: u64) -> Option<Auction> {
        (Self::event_kind(index) == EventKind::Auction).then(|| self.make_auction(index))
    }

    fn make_person(&self, index: u64) -> Person {
        let mut rnd = self.random(index);
        let id = last_base0_person_id(index) + FIRST_PERSON_ID;
        let mut name = String::with_capacity(16);
        name.push_str(FIRST_NAMES[pick(&mut rnd, FIRST_NAMES.len())]);
        name.push(' ');
        name.push_str(LAST_NAMES[pick(&mut rnd, LAST_NAMES.len())]);
        let mut email_address = next_string(&mut rnd, 7);
        email_address.push('@');
        email_address.push_str(&next_string(&mut rnd, 5));
        email_address.push_str(".com");
        let mut credit_card = String::with_capacity(19);
        for i in 0..4 {
            if i > 0 {
                credit_card.push(' ');
            }
            let group = rnd.next_int_bounded(10_000);
            credit_card.push_str(&format!("{group:04}"));
        }
        let city = US_CITIES[pick(&mut rnd, US_CITIES.len())];
        let state = US_STATES[pick(&mut rnd, US_STATES.len())];
        let current =
            8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let mut extra = String::new();
        next_extra(&mut rnd, current as i32, AVG_PERSON_BYTES, &mut extra);
        Person {
            id,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: self.timestamp(index),
            extra,
        }
    }

    fn make_auction(&self, index: u64) -> Auction {
        let mut rnd = self.random(index);
        let timestamp = self.timestamp(index);
        let id = last_base0_auction_id(index) + FIRST_AUCTION_ID;
        let seller = if rnd.next_int_bounded(HOT_SELLERS_RATIO) > 0 {
            (last_base0_person_id(index) / HOT_BATCH) * HOT_BATCH
        } else {
            next_base0_person_id(index, &mut rnd)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + i64::from(rnd.next_int_bounded(NUM_CATEGORIES));
        let initial_bid = next_price(&mut rnd);
        let expires = timestamp + self.next_auction_length_ms(index, timestamp, &mut rnd);
        let item_name = next_string(&mut rnd, 20);
        let description = next_string(&mut rnd, 100);
        let reserve = initial_bid + next_price(&mut rnd);
        let current = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let mut extra = String::new();
        next_extra(&mut rnd, current as i32, AVG_AUCTION_BYTES, &mut extra);
        Auction {
            id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: timestamp,
            expires,
            seller,
            category,
            extra,
        }
    }

    /// Auction length: uniform in `1 ..= 2 * horizon`, where the horizon is the event-time
    /// distance to the auction `NUM_IN_FLIGHT_AUCTIONS` ahead, so about that many are open.
    fn next_auction_length_ms(&self, index: u64, timestamp: i64, rnd: &mut JavaRandom) -> i64 {
        let events_for_auctions =
            (NUM_IN_FLIGHT_AUCTIONS as u64 * TOTAL_PROPORTION) / AUCTION_PROPORTION;
        let future_auction = self.timestamp(index.wrapping_add(events_for_auctions));
        let horizon_ms = future_auction - timestamp;
        1 + rnd.next_long_below((horizon_ms * 2).max(1))
    }

    #[inline]
    fn make_bid(&self, index: u64, rnd: &mut JavaRandom) -> Bid {
        let auction = if rnd.next_int_bounded(HOT_AUCTION_RATIO) > 0 {
            (last_base0_auction_id(index) / HOT_BATCH) * HOT_BATCH
        } else {
            next_base0_auction_id(index, rnd)
        } + FIRST_AUCTION_ID;
        let bidder = if rnd.next_int_bounded(HOT_BIDDERS_RATIO) > 0 {
            (last_base0_person_id(index) / HOT_BATCH) * HOT_BATCH + 1
        } else {
            next_base0_person_id(index, rnd)
        } + FIRST_PERSON_ID;
        let price = next_price(rnd);
        Bid {
            auction,
            bidder,
            price,
            date_time: self.timestamp(index),
        }
    }
}

/// `nextInt(len)` as an index into a small constant table.
#[inline]
fn pick(rnd: &mut JavaRandom, len: usize) -> usize {
    rnd.next_int_bounded(len as i32) as usize
}

/// The last person id (base 0) generated at or before event `event_id`.
#[inline]
pub fn last_base0_person_id(event_id: u64) -> i64 {
    let epoch = (event_id / TOTAL_PROPORTION) as i64;
    let rem = event_id % TOTAL_PROPORTION;
    // Past the persons of this cycle: the last person is the cycle's last one.
    let offset = if rem < PERSON_PROPORTION {
        rem
    } else {
        PERSON_PROPORTION - 1
    };
    epoch * PERSON_PROPORTION as i64 + offset as i64
}

/// The last auction id (base 0) generated at or before event `event_id` (-1 before the first).
#[inline]
pub fn last_base0_auction_id(event_id: u64) -> i64 {
    let mut epoch = (event_id / TOTAL_PROPORTION) as i64;
    let mut offset = (event_id % TOTAL_PROPORTION) as i64;
    let persons = PERSON_PROPORTION as i64;
    let auctions = AUCTION_PROPORTION as i64;
    if offset < persons {
        epoch -= 1;
        offset = auctions - 1;
    } else if offset >= persons + auctions {
        offset = auctions - 1;
    } else {
        offset -= persons;
    }
    epoch * auctions + offset
}

/// A random active person (base 0), possibly up to [`ID_LEAD`] ids ahead of the last one.
#[inline]
fn next_base0_person_id(event_id: u64, rnd: &mut JavaRandom) -> i64 {
    let num_people = last_base0_person_id(event_id) + 1;
    let active = num_people.min(NUM_ACTIVE_PEOPLE);
    let n = rnd.next_long_below(active + ID_LEAD);
    num_people - active + n
}

/// A random in-flight auction (base 0), possibly up to [`ID_LEAD`] ids ahead of the last one.
#[inline]
fn next_base0_auction_id(event_id: u64, rnd: &mut JavaRandom) -> i64 {
    let max_auction = last_base0_auction_id(event_id);
    let min_auction = (max_auction - NUM_IN_FLIGHT_AUCTIONS).max(0);
    min_auction + rnd.next_long_below(max_auction - min_auction + 1 + ID_LEAD)
}

/// A price in cents, log-uniform between 100 ($1) and 100,000,000 ($1M).
#[inline]
fn next_price(rnd: &mut JavaRandom) -> i64 {
    round_half_up(exp10(rnd.next_double() * 6.0) * 100.0)
}

/// A string of 3 to `max_len - 1` characters, `a..z` with about one space in 13, then trimmed.
fn next_string(rnd: &mut JavaRandom, max_len: i32) -> String {
    let len = 3 + rnd.next_int_bounded(max_len - 3);
    let mut s = String::with_capacity(len as usize);
    for _ in 0..len {
        if rnd.next_int_bounded(13) == 0 {
            s.push(' ');
        } else {
            s.push(char::from(b'a' + rnd.next_int_bounded(26) as u8));
        }
    }
    let trimmed = s.trim_matches(' ');
    if trimmed.len() == s.len() {
        s
    } else {
        trimmed.to_owned()
    }
}

/// Appends filler of `a..z` so that `current + filler` averages `average` bytes: the length is
/// uniform in `[avg - delta, avg + delta)` with `avg = average - current` and
/// `delta = round(avg / 5)`. Six letters come from each 31-bit draw.
fn next_extra(rnd: &mut JavaRandom, current: i32, average: i32, out: &mut String) {
    if current > average {
        return;
    }
    let avg = average - current;
    let delta = (2 * avg + 5) / 10;
    let min = avg - delta;
    let len = min
        + if delta == 0 {
            0
        } else {
            rnd.next_int_bounded(2 * delta)
        };
    out.reserve(len as usize);
    let mut draw = 0i32;
    let mut left = 0;
    for _ in 0..len {
        if left == 0 {
            draw = rnd.next_bits(31);
            left = 6;
        }
        out.push(char::from(b'a' + (draw % 26) as u8));
        draw /= 26;
        left -= 1;
    }
}

impl std::fmt::Display for Person {
    /// `P,{id},{name},{email},{credit_card},{city},{state},{date_time},{extra}`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "P,{},{},{},{},{},{},{},{}",
            self.id,
            self.name,
            self.email_address,
            self.credit_card,
            self.city,
            self.state,
            self.date_time,
            self.extra
        )
    }
}

impl std::fmt::Display for Auction {
    /// `A,{id},{item_name},{description},{initial_bid},{reserve},{date_time},{expires},{seller},{category},{extra}`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "A,{},{},{},{},{},{},{},{},{},{}",
            self.id,
            self.item_name,
            self.description,
            self.initial_bid,
            self.reserve,
            self.date_time,
            self.expires,
            self.seller,
            self.category,
            self.extra
        )
    }
}

impl std::fmt::Display for Bid {
    /// `B,{auction},{bidder},{price},{date_time}`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "B,{},{},{},{}",
            self.auction, self.bidder, self.price, self.date_time
        )
    }
}

impl std::fmt::Display for NexmarkEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NexmarkEvent::Person(p) => p.fmt(f),
            NexmarkEvent::Auction(a) => a.fmt(f),
            NexmarkEvent::Bid(b) => b.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_proportions() {
        // Events 0..50: person 0 at 0, auctions 0..3 at 1..4, bids after.
        assert_eq!(NexmarkConfig::event_kind(0), EventKind::Person);
        assert_eq!(NexmarkConfig::event_kind(3), EventKind::Auction);
        assert_eq!(NexmarkConfig::event_kind(4), EventKind::Bid);
        assert_eq!(NexmarkConfig::event_kind(50), EventKind::Person);
        assert_eq!(last_base0_person_id(0), 0);
        assert_eq!(last_base0_person_id(49), 0);
        assert_eq!(last_base0_person_id(50), 1);
        assert_eq!(last_base0_auction_id(0), -1);
        assert_eq!(last_base0_auction_id(1), 0);
        assert_eq!(last_base0_auction_id(3), 2);
        assert_eq!(last_base0_auction_id(10), 2);
        assert_eq!(last_base0_auction_id(52), 4);
        let c = NexmarkConfig::default();
        assert_eq!(c.person(50).map(|p| p.id), Some(1001));
        assert_eq!(c.auction(53).map(|a| a.id), Some(1005));
        assert!(c.bid(50).is_none());
    }

    #[test]
    fn timestamps_are_non_decreasing_at_the_configured_rate() {
        let c = NexmarkConfig::default();
        assert_eq!(c.timestamp(0), DEFAULT_BASE_TIME_MS);
        assert_eq!(c.timestamp(9), DEFAULT_BASE_TIME_MS);
        assert_eq!(c.timestamp(10), DEFAULT_BASE_TIME_MS + 1);
        assert_eq!(c.timestamp(10_000), DEFAULT_BASE_TIME_MS + 1000);
        let slow = NexmarkConfig { event_rate: 0, ..c };
        assert_eq!(slow.timestamp(3), DEFAULT_BASE_TIME_MS + 3000);
        assert!((0..100_000).all(|i| c.timestamp(i) <= c.timestamp(i + 1)));
    }

    #[test]
    fn bids_follow_hot_ratios_and_price_range() {
        let c = NexmarkConfig::default();
        let (mut bids, mut hot_auction, mut hot_bidder) = (0u64, 0u64, 0u64);
        for i in 0..200_000u64 {
            let Some(b) = c.bid(i) else { continue };
            bids += 1;
            let hot_a = (last_base0_auction_id(i) / HOT_BATCH) * HOT_BATCH + FIRST_AUCTION_ID;
            let hot_p = (last_base0_person_id(i) / HOT_BATCH) * HOT_BATCH + 1 + FIRST_PERSON_ID;
            hot_auction += u64::from(b.auction == hot_a);
            hot_bidder += u64::from(b.bidder == hot_p);
            assert!((100..=100_000_000).contains(&b.price), "price {}", b.price);
            assert!(b.auction >= FIRST_AUCTION_ID);
            assert!(b.auction <= last_base0_auction_id(i) + ID_LEAD + FIRST_AUCTION_ID);
            assert_eq!(b.date_time, c.timestamp(i));
        }
        assert_eq!(bids, 200_000 / 50 * 46);
        let ha = hot_auction as f64 / bids as f64;
        let hb = hot_bidder as f64 / bids as f64;
        // 1/2 of bids go to the hot auction, plus random picks that happen to hit it.
        assert!((0.5..0.52).contains(&ha), "hot auction share {ha}");
        assert!((0.75..0.77).contains(&hb), "hot bidder share {hb}");
    }

    #[test]
    fn persons_and_auctions_are_well_formed() {
        let c = NexmarkConfig {
            seed: 9,
            ..NexmarkConfig::default()
        };
        let mut extra_total = 0usize;
        for k in 0..2000u64 {
            let p = c.person(k * 50).expect("index 50k is a person");
            assert_eq!(p.id, FIRST_PERSON_ID + k as i64);
            assert!(p.email_address.ends_with(".com") && p.email_address.contains('@'));
            assert_eq!(p.credit_card.len(), 19);
            assert!(US_CITIES.contains(&p.city) && US_STATES.contains(&p.state));
            let a = c.auction(k * 50 + 2).expect("index 50k+2 is an auction");
            assert_eq!(a.id, FIRST_AUCTION_ID + 3 * k as i64 + 1);
            assert!(a.expires > a.date_time);
            assert!(a.reserve > a.initial_bid);
            assert!((10..15).contains(&a.category));
            assert!(a.seller >= FIRST_PERSON_ID);
            assert!(!a.item_name.starts_with(' ') && !a.item_name.ends_with(' '));
            extra_total += a.extra.len();
        }
        // Auction filler pads towards 500 bytes: the average is well above 300 bytes.
        assert!(extra_total / 2000 > 300);
        let mut extra = String::new();
        let b = c.bid_with_extra(4, &mut extra).expect("index 4 is a bid");
        assert_eq!(Some(b), c.bid(4));
        assert!(
            (54..=80).contains(&extra.len()),
            "bid extra {}",
            extra.len()
        );
        assert!(extra.bytes().all(|ch| ch.is_ascii_lowercase()));
    }
}
