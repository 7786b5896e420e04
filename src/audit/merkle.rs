//! RFC 6962 / RFC 9162 Merkle tree hashing, an append-only tree builder, and inclusion and consistency proofs over SHA-256.
//!
//! Leaves and interior nodes are hashed with distinct one-byte prefixes
//! (0x00 and 0x01) so that an interior node can never be passed off as a leaf
//! (second-preimage protection, RFC 9162 §2.1.1).

use aws_lc_rs::digest::{SHA256, digest};
use thiserror::Error;

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} is larger than the {available} leaves supplied")]
    SizeExceedsLeaves { size: u64, available: u64 },
    #[error("the older tree size {old} is larger than the newer tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("the proof has fewer hashes than a tree of this size needs")]
    ProofTooShort,
    #[error("the proof has more hashes than a tree of this size needs")]
    ProofTooLong,
    #[error("a consistency proof between different non-empty tree sizes cannot be empty")]
    EmptyConsistencyProof,
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
    #[error("the proof does not lead to the older root hash")]
    OldRootMismatch,
    #[error("the proof does not lead to the newer root hash")]
    NewRootMismatch,
    #[error("a tree of size {size} needs {expected} frontier hashes, but {found} were given")]
    FrontierLength { size: u64, expected: usize, found: usize },
    #[error("the tree already holds the maximum number of leaves")]
    TreeFull,
}

/// SHA-256 of the empty string: the root of a tree with no leaves.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, &[]).as_ref())
}

/// Hash of one log entry: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(data);
    to_hash(ctx.finish().as_ref())
}

/// Hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous buffer and a one-shot digest is measurably faster than a
    // streaming context, and node hashing dominates root computation.
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    to_hash(digest(&SHA256, &buf).as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    // SHA-256 always yields 32 bytes; copying by zip avoids a panicking length check.
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

/// Incremental builder for an append-only tree.
///
/// Keeps only the roots of the perfect subtrees that make up the tree (the
/// "frontier" or compact range `[0, size)`), largest first, so memory is
/// O(log n) however many leaves are appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeBuilder {
    size: u64,
    frontier: Vec<Hash>,
}

impl TreeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes a tree from a stored size and frontier, e.g. after a restart.
    ///
    /// The frontier must hold one hash per set bit of `size`, largest subtree
    /// first, exactly as [`TreeBuilder::frontier`] returns it.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if frontier.len() != expected {
            return Err(MerkleError::FrontierLength { size, expected, found: frontier.len() });
        }
        Ok(Self { size, frontier })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Roots of the perfect subtrees covering the tree, largest first.
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }

    /// Appends a leaf hash and returns its index.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(MerkleError::TreeFull)?;
        let mut carry = leaf;
        // Each trailing one bit of the old size is a perfect subtree of the
        // same height as `carry`, so they merge like a binary increment.
        let mut bits = index;
        while bits & 1 == 1 {
            match self.frontier.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
            bits >>= 1;
        }
        self.frontier.push(carry);
        self.size = new_size;
        Ok(index)
    }

    /// The tree head (MTH) of everything appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.frontier.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// MTH(D[n]) of a slice of leaf hashes (RFC 9162 §2.1.1).
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    let mut builder = TreeBuilder::new();
    for leaf in leaves {
        // A slice cannot hold u64::MAX elements, so TreeFull is unreachable.
        if builder.push(*leaf).is_err() {
            break;
        }
    }
    builder.root()
}

/// Largest power of two strictly less than `n`; `n` must be at least 2.
fn split_point(n: usize) -> usize {
    let p = n.next_power_of_two();
    if p == n { n / 2 } else { p / 2 }
}

fn to_usize(v: u64, available: usize) -> Result<usize, MerkleError> {
    usize::try_from(v)
        .ok()
        .filter(|v| *v <= available)
        .ok_or(MerkleError::SizeExceedsLeaves { size: v, available: available as u64 })
}

/// Inclusion proof (RFC 9162 §2.1.3.1 PATH) for leaf `index` in the tree made
/// of the first `size` entries of `leaves`, ordered from the leaf upwards.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
    let n = to_usize(size, leaves.len())?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    // `index < size <= leaves.len()`, so it fits in usize.
    path(index as usize, &leaves[..n], &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        path(m, left, out);
        out.push(root_from_leaves(right));
    } else {
        path(m - k, right, out);
        out.push(root_from_leaves(left));
    }
}

/// Consistency proof (RFC 9162 §2.1.4.1) that the tree of the first
/// `old_size` leaves is a prefix of the tree of the first `new_size` leaves.
///
/// The proof is empty when `old_size` is 0 or equal to `new_size`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64, new_size: u64) -> Result<Vec<Hash>, MerkleError> {
    let n = to_usize(new_size, leaves.len())?;
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old: old_size, new: new_size });
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < new_size {
        subproof(old_size as usize, &leaves[..n], true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root_from_leaves(leaves));
        }
        return;
    }
    let k = split_point(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(m, left, complete, out);
        out.push(root_from_leaves(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root_from_leaves(left));
    }
}

/// Recomputes the root from an inclusion proof (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion_proof(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip levels where this node is the last, unpaired one: its
            // parent is itself, so no proof hash is consumed there.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::ProofTooShort);
    }
    Ok(r)
}

/// Checks that `leaf` is entry `index` of the tree of `size` leaves with head `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), MerkleError> {
    if root_from_inclusion_proof(leaf, index, size, proof)? == *root { Ok(()) } else { Err(MerkleError::RootMismatch) }
}

/// Checks that the tree (`old_size`, `old_root`) is a prefix of the tree
/// (`new_size`, `new_root`) (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old: old_size, new: new_size });
    }
    if old_size == new_size || old_size == 0 {
        // Nothing to prove, so any hash in the proof is a sign of confusion
        // about the sizes; insist the claimed roots are the trivial ones.
        if !proof.is_empty() {
            return Err(MerkleError::ProofTooLong);
        }
        if old_size == 0 && *old_root != empty_root() {
            return Err(MerkleError::OldRootMismatch);
        }
        if old_size == new_size && old_root != new_root {
            return Err(MerkleError::RootMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(MerkleError::EmptyConsistencyProof);
    }

    // When the old tree is a perfect subtree of the new one its root is
    // itself the first node of the path, so the RFC prepends it.
    let old_is_perfect = old_size.is_power_of_two();
    let mut path = proof.iter();
    let seed = if old_is_perfect {
        old_root
    } else {
        match path.next() {
            Some(h) => h,
            None => return Err(MerkleError::EmptyConsistencyProof),
        }
    };

    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *seed;
    let mut sr = *seed;
    for c in path {
        if snode == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(MerkleError::NewRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    fn hs(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|s| h(s)).collect()
    }

    // Reference vectors from github.com/transparency-dev/merkle,
    // proof/verify_test.go (variables `leaves`, `roots`, `inclusionProofs`,
    // `consistencyProofs`), which carry the RFC 6962 vectors used by
    // google/certificate-transparency and google/trillian. The leaf numbers in
    // `inclusionProofs` there are 1-based; they are converted to 0-based here.
    const LEAVES_HEX: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn vector_leaves() -> Vec<Hash> {
        LEAVES_HEX.iter().map(|s| leaf_hash(&hex::decode(s).unwrap())).collect()
    }

    fn root(size: u64) -> Hash {
        h(ROOTS[size as usize - 1])
    }

    /// (0-based index, size, path)
    fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (0, 1, vec![]),
            (
                0,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                5,
                8,
                hs(&[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (2, 3, hs(&["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"])),
            (
                1,
                5,
                hs(&[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
        ]
    }

    /// (old size, new size, proof)
    fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                6,
                8,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                5,
                hs(&[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
            (
                6,
                7,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
        ]
    }

    // Hasher vectors from transparency-dev/merkle rfc6962/rfc6962_test.go.
    #[test]
    fn hasher_vectors() {
        assert_eq!(empty_root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_eq!(leaf_hash(b""), h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"));
        assert_eq!(leaf_hash(b"L123456"), h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"));
        assert_ne!(node_hash(&empty_root(), &empty_root()), leaf_hash(&[0u8; 64]));
    }

    #[test]
    fn roots_match_reference() {
        let leaves = vector_leaves();
        let mut builder = TreeBuilder::new();
        assert_eq!(builder.root(), empty_root());
        assert_eq!(root_from_leaves(&[]), empty_root());
        for size in 1..=8u64 {
            assert_eq!(builder.push(leaves[size as usize - 1]).unwrap(), size - 1);
            assert_eq!(builder.root(), root(size), "builder, size {size}");
            assert_eq!(root_from_leaves(&leaves[..size as usize]), root(size), "slice, size {size}");
        }
    }

    #[test]
    fn inclusion_matches_reference() {
        let leaves = vector_leaves();
        for (index, size, want) in inclusion_vectors() {
            let got = inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(got, want, "proof for {index} in {size}");
            verify_inclusion(&leaves[index as usize], index, size, &want, &root(size)).unwrap();
        }
    }

    #[test]
    fn consistency_matches_reference() {
        let leaves = vector_leaves();
        for (old, new, want) in consistency_vectors() {
            let got = consistency_proof(&leaves, old, new).unwrap();
            assert_eq!(got, want, "proof {old} -> {new}");
            verify_consistency(old, new, &root(old), &root(new), &want).unwrap();
        }
    }

    // Mirrors the kinds of corruption probed by transparency-dev's verify_test.go.
    #[test]
    fn corrupted_reference_inclusion_proofs_fail() {
        let leaves = vector_leaves();
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        for (index, size, proof) in inclusion_vectors() {
            let leaf = leaves[index as usize];
            let r = root(size);
            let bad = |i: u64, s: u64, l: Hash, p: &[Hash], rt: Hash| verify_inclusion(&l, i, s, p, &rt).is_err();
            if index > 0 {
                assert!(bad(index - 1, size, leaf, &proof, r));
            }
            assert!(bad(index + 1, size, leaf, &proof, r));
            assert!(bad(index ^ 2, size, leaf, &proof, r));
            assert!(bad(index, size * 2, leaf, &proof, r));
            assert!(bad(index, size / 2, leaf, &proof, r));
            assert!(bad(index, size, leaf_hash(b"WrongLeaf"), &proof, r));
            assert!(bad(index, size, leaf, &proof, empty_root()));
            assert!(bad(index, size, leaf, &proof, some));
            let mut longer = proof.clone();
            longer.push(r);
            assert!(bad(index, size, leaf, &longer, r));
            let mut prefixed = vec![r];
            prefixed.extend_from_slice(&proof);
            assert!(bad(index, size, leaf, &prefixed, r));
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i][0] ^= 8;
                assert!(bad(index, size, leaf, &p, r));
            }
            if !proof.is_empty() {
                assert!(bad(index, size, leaf, &proof[..proof.len() - 1], r));
            }
        }
    }

    #[test]
    fn corrupted_reference_consistency_proofs_fail() {
        for (old, new, proof) in consistency_vectors() {
            if proof.is_empty() {
                continue;
            }
            let (r1, r2) = (root(old), root(new));
            let bad = |o: u64, n: u64, a: Hash, b: Hash, p: &[Hash]| verify_consistency(o, n, &a, &b, p).is_err();
            assert!(bad(old - 1, new, r1, r2, &proof));
            assert!(bad(old + 1, new, r1, r2, &proof));
            assert!(bad(old ^ 2, new, r1, r2, &proof));
            assert!(bad(old, new * 2, r1, r2, &proof));
            assert!(bad(old, new / 2, r1, r2, &proof));
            assert!(bad(old, new, leaf_hash(b"WrongRoot"), r2, &proof));
            assert!(bad(old, new, r1, leaf_hash(b"WrongRoot"), &proof));
            assert!(bad(old, new, r2, r1, &proof));
            assert!(bad(old, new, r1, r2, &[]));
            for extra in [r1, r2] {
                let mut p = proof.clone();
                p.push(extra);
                assert!(bad(old, new, r1, r2, &p));
                let mut p = vec![extra];
                p.extend_from_slice(&proof);
                assert!(bad(old, new, r1, r2, &p));
            }
            assert!(bad(old, new, r1, r2, &proof[..proof.len() - 1]));
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i][0] ^= 16;
                assert!(bad(old, new, r1, r2, &p));
            }
        }
    }

    #[test]
    fn trivial_consistency_cases() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        assert!(verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).is_ok());
        assert!(verify_consistency(0, 5, &empty_root(), &a, &[]).is_ok());
        assert!(verify_consistency(3, 3, &a, &a, &[]).is_ok());
        assert_eq!(verify_consistency(3, 3, &a, &b, &[]), Err(MerkleError::RootMismatch));
        assert_eq!(verify_consistency(0, 1, &a, &b, &[]), Err(MerkleError::OldRootMismatch));
        assert_eq!(verify_consistency(3, 3, &a, &a, &[a]), Err(MerkleError::ProofTooLong));
        assert_eq!(verify_consistency(2, 1, &a, &b, &[]), Err(MerkleError::SizesOutOfOrder { old: 2, new: 1 }));
        assert_eq!(verify_consistency(1, 2, &a, &b, &[]), Err(MerkleError::EmptyConsistencyProof));
    }

    #[test]
    fn generation_rejects_bad_arguments() {
        let leaves = vector_leaves();
        assert_eq!(inclusion_proof(&leaves, 8, 8), Err(MerkleError::IndexOutOfRange { index: 8, size: 8 }));
        assert_eq!(inclusion_proof(&leaves, 0, 0), Err(MerkleError::IndexOutOfRange { index: 0, size: 0 }));
        assert_eq!(inclusion_proof(&leaves, 0, 9), Err(MerkleError::SizeExceedsLeaves { size: 9, available: 8 }));
        assert_eq!(consistency_proof(&leaves, 5, 4), Err(MerkleError::SizesOutOfOrder { old: 5, new: 4 }));
        assert_eq!(consistency_proof(&leaves, 0, 8), Ok(vec![]));
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 0, &[], &empty_root()),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
    }

    #[test]
    fn frontier_round_trip() {
        let leaves: Vec<Hash> = (0..37u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut a = TreeBuilder::new();
        for l in &leaves[..21] {
            a.push(*l).unwrap();
        }
        assert_eq!(a.frontier().len(), 3); // 21 = 0b10101
        let mut b = TreeBuilder::from_frontier(a.size(), a.frontier().to_vec()).unwrap();
        for l in &leaves[21..] {
            b.push(*l).unwrap();
        }
        assert_eq!(b.root(), root_from_leaves(&leaves));
        assert_eq!(
            TreeBuilder::from_frontier(21, vec![empty_root()]),
            Err(MerkleError::FrontierLength { size: 21, expected: 3, found: 1 })
        );
    }

    /// Straight transcription of the RFC's recursive MTH, as an oracle.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n);
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn make_leaves(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn builder_matches_naive_root_for_all_small_sizes() {
        let leaves = make_leaves(130);
        let mut b = TreeBuilder::new();
        for (i, l) in leaves.iter().enumerate() {
            b.push(*l).unwrap();
            assert_eq!(b.root(), naive_root(&leaves[..=i]), "size {}", i + 1);
            assert_eq!(b.frontier().len(), (i + 1).count_ones() as usize);
        }
    }

    #[test]
    fn all_proofs_verify_for_small_trees() {
        let leaves = make_leaves(40);
        let roots: Vec<Hash> = (0..=leaves.len()).map(|n| naive_root(&leaves[..n])).collect();
        for n in 1..=leaves.len() as u64 {
            for m in 0..n {
                let p = inclusion_proof(&leaves, m, n).unwrap();
                verify_inclusion(&leaves[m as usize], m, n, &p, &roots[n as usize]).unwrap();
            }
            for m in 0..=n {
                let p = consistency_proof(&leaves, m, n).unwrap();
                verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn inclusion_roundtrip_and_tamper(
            n in 1usize..600,
            m_seed in any::<u64>(),
            flip_seed in any::<u64>(),
            bit in 0u8..8,
        ) {
            let leaves = make_leaves(n);
            let root = root_from_leaves(&leaves);
            let m = m_seed % n as u64;
            let proof = inclusion_proof(&leaves, m, n as u64).unwrap();
            prop_assert!(verify_inclusion(&leaves[m as usize], m, n as u64, &proof, &root).is_ok());

            if !proof.is_empty() {
                let mut bad = proof.clone();
                let i = (flip_seed % bad.len() as u64) as usize;
                bad[i][(flip_seed as usize / 7) % 32] ^= 1 << bit;
                prop_assert!(verify_inclusion(&leaves[m as usize], m, n as u64, &bad, &root).is_err());
                prop_assert!(verify_inclusion(&leaves[m as usize], m, n as u64, &proof[1..], &root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(root);
            prop_assert!(verify_inclusion(&leaves[m as usize], m, n as u64, &longer, &root).is_err());
            let mut wrong_leaf = leaves[m as usize];
            wrong_leaf[0] ^= 1 << bit;
            prop_assert!(verify_inclusion(&wrong_leaf, m, n as u64, &proof, &root).is_err());
            if n > 1 {
                let other = (m + 1) % n as u64;
                prop_assert!(verify_inclusion(&leaves[m as usize], other, n as u64, &proof, &root).is_err());
            }
        }

        #[test]
        fn consistency_roundtrip_and_tamper(
            n in 2usize..600,
            m_seed in any::<u64>(),
            flip_seed in any::<u64>(),
            bit in 0u8..8,
        ) {
            let leaves = make_leaves(n);
            let m = 1 + m_seed % (n as u64 - 1); // 1 <= m < n
            let old_root = root_from_leaves(&leaves[..m as usize]);
            let new_root = root_from_leaves(&leaves);
            let proof = consistency_proof(&leaves, m, n as u64).unwrap();
            prop_assert!(verify_consistency(m, n as u64, &old_root, &new_root, &proof).is_ok());
            prop_assert!(!proof.is_empty());

            let mut bad = proof.clone();
            let i = (flip_seed % bad.len() as u64) as usize;
            bad[i][(flip_seed as usize / 7) % 32] ^= 1 << bit;
            prop_assert!(verify_consistency(m, n as u64, &old_root, &new_root, &bad).is_err());
            prop_assert!(verify_consistency(m, n as u64, &old_root, &new_root, &proof[..proof.len() - 1]).is_err());
            let mut longer = proof.clone();
            longer.push(new_root);
            prop_assert!(verify_consistency(m, n as u64, &old_root, &new_root, &longer).is_err());
            let mut wrong_old = old_root;
            wrong_old[31] ^= 1 << bit;
            prop_assert!(verify_consistency(m, n as u64, &wrong_old, &new_root, &proof).is_err());
            let mut wrong_new = new_root;
            wrong_new[0] ^= 1 << bit;
            prop_assert!(verify_consistency(m, n as u64, &old_root, &wrong_new, &proof).is_err());
        }
    }
}
