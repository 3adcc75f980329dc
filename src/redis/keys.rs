//! Which arguments of a command are keys (or channels): they are kept and
//! shown in `db.query.text`; every other argument is a value, an option or
//! a secret and becomes `?`. A command not listed here shows no argument at
//! all: leaving out a key is harmless, showing a value is not.

/// Where a command's keys are, by argument position (the command is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keys {
    /// No argument is shown.
    None,
    /// Argument 1 (`GET key`, `SET key value…`, `SELECT index`).
    First,
    /// Arguments 1 and 2 (`RENAME from to`, `LMOVE src dst …`).
    FirstTwo,
    /// Every argument (`DEL k1 k2…`, `SUBSCRIBE ch1 ch2…`).
    All,
    /// Every argument but the last, a timeout (`BLPOP k1 k2 timeout`).
    AllButLast,
    /// Odd arguments (`MSET k1 v1 k2 v2`).
    Alternate,
    /// `EVAL script numkeys key… arg…`: numkeys and the keys.
    Eval,
    /// A container command (`CLIENT SETNAME name`): argument 1 is its
    /// subcommand, part of the operation name; nothing else is shown.
    Sub,
    /// A container whose subcommand takes a key (`OBJECT ENCODING key`).
    SubThenKey,
}

/// The key layout of a command, by its upper-cased name.
pub(crate) fn keys_of(name: &[u8]) -> Keys {
    match name {
        b"GET"
        | b"SET"
        | b"SETNX"
        | b"SETEX"
        | b"PSETEX"
        | b"GETSET"
        | b"GETDEL"
        | b"GETEX"
        | b"APPEND"
        | b"STRLEN"
        | b"INCR"
        | b"DECR"
        | b"INCRBY"
        | b"DECRBY"
        | b"INCRBYFLOAT"
        | b"GETRANGE"
        | b"SETRANGE"
        | b"SUBSTR"
        | b"EXPIRE"
        | b"PEXPIRE"
        | b"EXPIREAT"
        | b"PEXPIREAT"
        | b"EXPIRETIME"
        | b"PEXPIRETIME"
        | b"TTL"
        | b"PTTL"
        | b"PERSIST"
        | b"TYPE"
        | b"DUMP"
        | b"RESTORE"
        | b"MOVE"
        | b"HSET"
        | b"HGET"
        | b"HMSET"
        | b"HMGET"
        | b"HDEL"
        | b"HEXISTS"
        | b"HGETALL"
        | b"HKEYS"
        | b"HVALS"
        | b"HLEN"
        | b"HINCRBY"
        | b"HINCRBYFLOAT"
        | b"HSETNX"
        | b"HSTRLEN"
        | b"HSCAN"
        | b"HRANDFIELD"
        | b"LPUSH"
        | b"RPUSH"
        | b"LPUSHX"
        | b"RPUSHX"
        | b"LPOP"
        | b"RPOP"
        | b"LLEN"
        | b"LRANGE"
        | b"LINDEX"
        | b"LSET"
        | b"LREM"
        | b"LTRIM"
        | b"LINSERT"
        | b"LPOS"
        | b"SADD"
        | b"SREM"
        | b"SMEMBERS"
        | b"SISMEMBER"
        | b"SMISMEMBER"
        | b"SCARD"
        | b"SPOP"
        | b"SRANDMEMBER"
        | b"SSCAN"
        | b"ZADD"
        | b"ZREM"
        | b"ZRANGE"
        | b"ZRANGEBYSCORE"
        | b"ZREVRANGE"
        | b"ZREVRANGEBYSCORE"
        | b"ZRANGEBYLEX"
        | b"ZREVRANGEBYLEX"
        | b"ZSCORE"
        | b"ZMSCORE"
        | b"ZINCRBY"
        | b"ZCARD"
        | b"ZCOUNT"
        | b"ZRANK"
        | b"ZREVRANK"
        | b"ZREMRANGEBYRANK"
        | b"ZREMRANGEBYSCORE"
        | b"ZREMRANGEBYLEX"
        | b"ZLEXCOUNT"
        | b"ZSCAN"
        | b"ZPOPMIN"
        | b"ZPOPMAX"
        | b"ZRANDMEMBER"
        | b"ZUNIONSTORE"
        | b"ZINTERSTORE"
        | b"ZDIFFSTORE"
        | b"PFADD"
        | b"GEOADD"
        | b"GEODIST"
        | b"GEOHASH"
        | b"GEOPOS"
        | b"GEOSEARCH"
        | b"GEORADIUS"
        | b"GEORADIUSBYMEMBER"
        | b"GEORADIUS_RO"
        | b"GEORADIUSBYMEMBER_RO"
        | b"XADD"
        | b"XRANGE"
        | b"XREVRANGE"
        | b"XLEN"
        | b"XTRIM"
        | b"XDEL"
        | b"XACK"
        | b"XCLAIM"
        | b"XAUTOCLAIM"
        | b"XPENDING"
        | b"XSETID"
        | b"BITCOUNT"
        | b"BITPOS"
        | b"GETBIT"
        | b"SETBIT"
        | b"BITFIELD"
        | b"BITFIELD_RO"
        | b"SORT"
        | b"SORT_RO"
        | b"SELECT"
        | b"HELLO"
        | b"PUBLISH"
        | b"SPUBLISH" => Keys::First,
        b"RENAME" | b"RENAMENX" | b"COPY" | b"LMOVE" | b"BLMOVE" | b"RPOPLPUSH" | b"BRPOPLPUSH"
        | b"SMOVE" | b"GEOSEARCHSTORE" | b"ZRANGESTORE" | b"LCS" => Keys::FirstTwo,
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" | b"MGET" | b"WATCH" | b"SINTER" | b"SUNION"
        | b"SDIFF" | b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" | b"PFCOUNT" | b"PFMERGE"
        | b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
        | b"SUNSUBSCRIBE" | b"INFO" => Keys::All,
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => Keys::AllButLast,
        b"MSET" | b"MSETNX" => Keys::Alternate,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => Keys::Eval,
        b"CLIENT" | b"CONFIG" | b"CLUSTER" | b"COMMAND" | b"SCRIPT" | b"FUNCTION" | b"ACL"
        | b"SLOWLOG" | b"LATENCY" | b"MODULE" | b"DEBUG" | b"PUBSUB" => Keys::Sub,
        b"OBJECT" | b"XINFO" | b"XGROUP" | b"MEMORY" => Keys::SubThenKey,
        _ => Keys::None,
    }
}

impl Keys {
    /// Whether argument `i` (1 or more) of a command with `argc` words in
    /// all is a key. `numkeys` is EVAL's argument 2, once known.
    pub(crate) fn is_key(self, i: u64, argc: u64, numkeys: Option<u64>) -> bool {
        match self {
            Keys::None | Keys::Sub => false,
            Keys::First => i == 1,
            Keys::FirstTwo => i == 1 || i == 2,
            Keys::All => i >= 1,
            Keys::AllButLast => i >= 1 && i + 1 < argc,
            Keys::Alternate => i % 2 == 1,
            // numkeys itself is shown: it says how many keys follow.
            Keys::Eval => i == 2 || numkeys.is_some_and(|n| i >= 3 && i - 3 < n),
            Keys::SubThenKey => i == 2,
        }
    }

    /// Whether argument 1 is a subcommand.
    pub(crate) fn has_subcommand(self) -> bool {
        matches!(self, Keys::Sub | Keys::SubThenKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions() {
        // (command, argc, positions that are keys)
        let cases: &[(&[u8], u64, &[u64])] = &[
            (b"GET", 2, &[1]),
            (b"SET", 5, &[1]),
            (b"MGET", 4, &[1, 2, 3]),
            (b"MSET", 5, &[1, 3]),
            (b"BLPOP", 4, &[1, 2]),
            (b"RENAME", 3, &[1, 2]),
            (b"AUTH", 3, &[]),
            (b"CLIENT", 3, &[]),
            (b"OBJECT", 3, &[2]),
            (b"NOSUCHCOMMAND", 3, &[]),
        ];
        for (name, argc, want) in cases {
            let keys = keys_of(name);
            let got: Vec<u64> = (1..*argc)
                .filter(|&i| keys.is_key(i, *argc, None))
                .collect();
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(name));
        }
        let eval = keys_of(b"EVAL");
        let got: Vec<u64> = (1..7).filter(|&i| eval.is_key(i, 7, Some(2))).collect();
        assert_eq!(got, [2, 3, 4]);
        assert!(!eval.is_key(3, 7, None));
    }
}
