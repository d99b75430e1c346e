//! `ASKING`: sent before a command to a slot's importing node during a migration (after an `ASK` redirect). Its own
//! reply is read and only logged when refused; the command after it answers for the keys.

use crate::reader::Expect;
use crate::resp::Outgoing;

pub(super) const EXPECT: Expect = Expect::Scalar;

pub(super) fn encode(out: &mut Outgoing) {
    out.push(&[b"ASKING"]);
}
