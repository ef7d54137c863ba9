package io.mesoflow.peers.gen;

/**
 * Twin of {@code generators::nexmark}: Person / Auction / Bid event i of a seed, following the
 * Nexmark generator's rules as specified in docs/generators.md.
 */
public final class Nexmark implements java.io.Serializable {
    public static final long PERSON_PROPORTION = 1;
    public static final long AUCTION_PROPORTION = 3;
    public static final long BID_PROPORTION = 46;
    public static final long TOTAL_PROPORTION = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
    public static final long FIRST_PERSON_ID = 1000;
    public static final long FIRST_AUCTION_ID = 1000;
    public static final long FIRST_CATEGORY_ID = 10;
    static final int NUM_CATEGORIES = 5;
    static final long NUM_IN_FLIGHT_AUCTIONS = 100;
    static final long NUM_ACTIVE_PEOPLE = 1000;
    static final long ID_LEAD = 10;
    static final int HOT_AUCTION_RATIO = 2;
    static final int HOT_SELLERS_RATIO = 4;
    static final int HOT_BIDDERS_RATIO = 4;
    static final long HOT_BATCH = 100;
    static final int AVG_PERSON_BYTES = 200;
    static final int AVG_AUCTION_BYTES = 500;
    static final int AVG_BID_BYTES = 100;
    public static final long DEFAULT_BASE_TIME_MS = 1_436_918_400_000L;
    public static final long DEFAULT_EVENT_RATE = 10_000;

    static final String[] US_STATES = {"AZ", "CA", "ID", "OR", "WA", "WY"};
    static final String[] US_CITIES = {
        "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle",
        "Kent", "Cheyenne"
    };
    static final String[] FIRST_NAMES = {
        "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"
    };
    static final String[] LAST_NAMES = {
        "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"
    };

    public static final int PERSON = 0;
    public static final int AUCTION = 1;
    public static final int BID = 2;

    public static final class Person implements java.io.Serializable {
        public long id;
        public String name;
        public String emailAddress;
        public String creditCard;
        public String city;
        public String state;
        public long dateTime;
        public String extra;

        @Override
        public String toString() {
            return "P," + id + "," + name + "," + emailAddress + "," + creditCard + "," + city + ","
                    + state + "," + dateTime + "," + extra;
        }
    }

    public static final class Auction implements java.io.Serializable {
        public long id;
        public String itemName;
        public String description;
        public long initialBid;
        public long reserve;
        public long dateTime;
        public long expires;
        public long seller;
        public long category;
        public String extra;

        @Override
        public String toString() {
            return "A," + id + "," + itemName + "," + description + "," + initialBid + "," + reserve
                    + "," + dateTime + "," + expires + "," + seller + "," + category + "," + extra;
        }
    }

    /** A bid (a POJO so Flink serializes it without Kryo). */
    public static final class Bid implements java.io.Serializable {
        public long auction;
        public long bidder;
        public long price;
        public long dateTime;

        public Bid() {}

        @Override
        public String toString() {
            return "B," + auction + "," + bidder + "," + price + "," + dateTime;
        }
    }

    public final long seed;
    public final long eventRate;
    public final long baseTimeMs;

    public Nexmark(long seed, long eventRate, long baseTimeMs) {
        this.seed = seed;
        this.eventRate = eventRate == 0 ? 1 : eventRate;
        this.baseTimeMs = baseTimeMs;
    }

    public Nexmark(long seed) {
        this(seed, DEFAULT_EVENT_RATE, DEFAULT_BASE_TIME_MS);
    }

    public static int eventKind(long index) {
        long rem = Long.remainderUnsigned(index, TOTAL_PROPORTION);
        if (rem < PERSON_PROPORTION) {
            return PERSON;
        } else if (rem < PERSON_PROPORTION + AUCTION_PROPORTION) {
            return AUCTION;
        }
        return BID;
    }

    /** baseTimeMs + index * 1000 / eventRate (exact for index below 9.2e15). */
    public long timestamp(long index) {
        return baseTimeMs + Long.divideUnsigned(index * 1000, eventRate);
    }

    private Lcg48 random(long index) {
        return new Lcg48(index ^ (seed * SplitMix.GOLDEN_GAMMA));
    }

    /** Event {@code index} as an object of class Person, Auction or Bid. */
    public Object event(long index) {
        switch (eventKind(index)) {
            case PERSON:
                return makePerson(index);
            case AUCTION:
                return makeAuction(index);
            default:
                return makeBid(index, random(index), new Bid());
        }
    }

    /** Fills {@code out} with bid {@code index}; false (and untouched) if the event is not a bid. */
    public boolean bid(long index, Bid out) {
        if (eventKind(index) != BID) {
            return false;
        }
        makeBid(index, random(index), out);
        return true;
    }

    /** Like bid(), also appending the bid's extra filler. */
    public boolean bidWithExtra(long index, Bid out, StringBuilder extra) {
        if (eventKind(index) != BID) {
            return false;
        }
        Lcg48 rnd = random(index);
        makeBid(index, rnd, out);
        nextExtra(rnd, 32, AVG_BID_BYTES, extra);
        return true;
    }

    Person makePerson(long index) {
        Lcg48 rnd = random(index);
        Person p = new Person();
        p.id = lastBase0PersonId(index) + FIRST_PERSON_ID;
        p.name = FIRST_NAMES[rnd.nextInt(FIRST_NAMES.length)] + " "
                + LAST_NAMES[rnd.nextInt(LAST_NAMES.length)];
        p.emailAddress = nextString(rnd, 7) + "@" + nextString(rnd, 5) + ".com";
        StringBuilder cc = new StringBuilder(19);
        for (int i = 0; i < 4; i++) {
            if (i > 0) {
                cc.append(' ');
            }
            int group = rnd.nextInt(10_000);
            String digits = Integer.toString(group);
            for (int pad = digits.length(); pad < 4; pad++) {
                cc.append('0');
            }
            cc.append(digits);
        }
        p.creditCard = cc.toString();
        p.city = US_CITIES[rnd.nextInt(US_CITIES.length)];
        p.state = US_STATES[rnd.nextInt(US_STATES.length)];
        int current = 8 + p.name.length() + p.emailAddress.length() + p.creditCard.length()
                + p.city.length() + p.state.length();
        StringBuilder extra = new StringBuilder();
        nextExtra(rnd, current, AVG_PERSON_BYTES, extra);
        p.extra = extra.toString();
        p.dateTime = timestamp(index);
        return p;
    }

    Auction makeAuction(long index) {
        Lcg48 rnd = random(index);
        Auction a = new Auction();
        long ts = timestamp(index);
        a.id = lastBase0AuctionId(index) + FIRST_AUCTION_ID;
        long seller;
        if (rnd.nextInt(HOT_SELLERS_RATIO) > 0) {
            seller = (lastBase0PersonId(index) / HOT_BATCH) * HOT_BATCH;
        } else {
            seller = nextBase0PersonId(index, rnd);
        }
        a.seller = seller + FIRST_PERSON_ID;
        a.category = FIRST_CATEGORY_ID + rnd.nextInt(NUM_CATEGORIES);
        a.initialBid = nextPrice(rnd);
        long eventsForAuctions = (NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION) / AUCTION_PROPORTION;
        long horizonMs = timestamp(index + eventsForAuctions) - ts;
        a.expires = ts + 1 + rnd.nextLongBelow(Math.max(horizonMs * 2, 1));
        a.itemName = nextString(rnd, 20);
        a.description = nextString(rnd, 100);
        a.reserve = a.initialBid + nextPrice(rnd);
        int current = 8 + a.itemName.length() + a.description.length() + 8 + 8 + 8 + 8 + 8;
        StringBuilder extra = new StringBuilder();
        nextExtra(rnd, current, AVG_AUCTION_BYTES, extra);
        a.extra = extra.toString();
        a.dateTime = ts;
        return a;
    }

    Bid makeBid(long index, Lcg48 rnd, Bid b) {
        long auction;
        if (rnd.nextInt(HOT_AUCTION_RATIO) > 0) {
            auction = (lastBase0AuctionId(index) / HOT_BATCH) * HOT_BATCH;
        } else {
            auction = nextBase0AuctionId(index, rnd);
        }
        b.auction = auction + FIRST_AUCTION_ID;
        long bidder;
        if (rnd.nextInt(HOT_BIDDERS_RATIO) > 0) {
            bidder = (lastBase0PersonId(index) / HOT_BATCH) * HOT_BATCH + 1;
        } else {
            bidder = nextBase0PersonId(index, rnd);
        }
        b.bidder = bidder + FIRST_PERSON_ID;
        b.price = nextPrice(rnd);
        b.dateTime = timestamp(index);
        return b;
    }

    static long lastBase0PersonId(long eventId) {
        long epoch = Long.divideUnsigned(eventId, TOTAL_PROPORTION);
        long offset = Math.min(Long.remainderUnsigned(eventId, TOTAL_PROPORTION), PERSON_PROPORTION - 1);
        return epoch * PERSON_PROPORTION + offset;
    }

    static long lastBase0AuctionId(long eventId) {
        long epoch = Long.divideUnsigned(eventId, TOTAL_PROPORTION);
        long offset = Long.remainderUnsigned(eventId, TOTAL_PROPORTION);
        if (offset < PERSON_PROPORTION) {
            epoch--;
            offset = AUCTION_PROPORTION - 1;
        } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
            offset = AUCTION_PROPORTION - 1;
        } else {
            offset -= PERSON_PROPORTION;
        }
        return epoch * AUCTION_PROPORTION + offset;
    }

    static long nextBase0PersonId(long eventId, Lcg48 rnd) {
        long numPeople = lastBase0PersonId(eventId) + 1;
        long active = Math.min(numPeople, NUM_ACTIVE_PEOPLE);
        long n = rnd.nextLongBelow(active + ID_LEAD);
        return numPeople - active + n;
    }

    static long nextBase0AuctionId(long eventId, Lcg48 rnd) {
        long maxAuction = lastBase0AuctionId(eventId);
        long minAuction = Math.max(maxAuction - NUM_IN_FLIGHT_AUCTIONS, 0);
        return minAuction + rnd.nextLongBelow(maxAuction - minAuction + 1 + ID_LEAD);
    }

    static long nextPrice(Lcg48 rnd) {
        return PortableMath.roundHalfUp(PortableMath.exp10(rnd.nextDouble() * 6.0) * 100.0);
    }

    static String nextString(Lcg48 rnd, int maxLen) {
        int len = 3 + rnd.nextInt(maxLen - 3);
        StringBuilder sb = new StringBuilder(len);
        for (int i = 0; i < len; i++) {
            if (rnd.nextInt(13) == 0) {
                sb.append(' ');
            } else {
                sb.append((char) ('a' + rnd.nextInt(26)));
            }
        }
        int start = 0;
        int end = sb.length();
        while (start < end && sb.charAt(start) == ' ') {
            start++;
        }
        while (end > start && sb.charAt(end - 1) == ' ') {
            end--;
        }
        return sb.substring(start, end);
    }

    static void nextExtra(Lcg48 rnd, int current, int average, StringBuilder out) {
        if (current > average) {
            return;
        }
        int avg = average - current;
        int delta = (2 * avg + 5) / 10;
        int min = avg - delta;
        int len = min + (delta == 0 ? 0 : rnd.nextInt(2 * delta));
        int draw = 0;
        int left = 0;
        for (int i = 0; i < len; i++) {
            if (left == 0) {
                draw = rnd.next(31);
                left = 6;
            }
            out.append((char) ('a' + draw % 26));
            draw /= 26;
            left--;
        }
    }
}
