//! The ggml tensor types and the one table of facts about them.
//!
//! A GGUF tensor stores its type as a `u32` ggml type id. Quantized types pack
//! `block_size` consecutive elements of a row into `type_size` bytes, so a row's
//! length must be a multiple of `block_size` and its byte size is
//! `row_len / block_size * type_size`.
//!
//! Sizes are ggml's (`ggml-common.h`, `ggml.c` type traits). One difference from
//! gguf-py 0.19's `GGML_QUANT_SIZES`: Q8_1 is 36 bytes in ggml (`ggml_half d, s` plus 32
//! quants, a static assert in ggml-common.h); gguf-py still lists an old 40. Q8_1 is an
//! activation format and never appears in a model file.

use std::fmt;

/// What phiq can do with a type today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// phiq reads, dequantizes and multiplies with this type.
    Full,
    /// The size is known (so a file containing it can be inspected and validated),
    /// but phiq cannot compute with it yet: using such a tensor is a clear error.
    SizeOnly,
}

/// Facts about one ggml type. The single source of truth: see [`TYPE_TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeFacts {
    pub ty: GgmlType,
    /// ggml's type id, as stored in GGUF tensor infos.
    pub id: u32,
    /// ggml's name, as `gguf-dump` and llama.cpp print it ("Q4_K").
    pub name: &'static str,
    /// Elements per block (1 for plain float/int types).
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
    pub support: Support,
}

impl TypeFacts {
    /// Bits per weight of the format (including block scales).
    pub fn bits_per_weight(&self) -> f64 {
        self.type_size as f64 * 8.0 / self.block_size as f64
    }
}

macro_rules! ggml_types {
    ($( $variant:ident = $id:literal, $name:literal, $bs:expr, $ts:expr, $sup:ident; )*) => {
        /// A ggml tensor type. Ids match ggml's `enum ggml_type`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum GgmlType { $( $variant, )* }

        /// Every ggml type phiq knows, in id order.
        pub const TYPE_TABLE: &[TypeFacts] = &[
            $( TypeFacts {
                ty: GgmlType::$variant,
                id: $id,
                name: $name,
                block_size: $bs,
                type_size: $ts,
                support: Support::$sup,
            }, )*
        ];
    };
}

const QK_K: u64 = 256;

ggml_types! {
    F32 = 0, "F32", 1, 4, Full;
    F16 = 1, "F16", 1, 2, Full;
    Q4_0 = 2, "Q4_0", 32, 2 + 16, Full;
    Q4_1 = 3, "Q4_1", 32, 2 + 2 + 16, Full;
    Q5_0 = 6, "Q5_0", 32, 2 + 4 + 16, Full;
    Q5_1 = 7, "Q5_1", 32, 2 + 2 + 4 + 16, Full;
    Q8_0 = 8, "Q8_0", 32, 2 + 32, Full;
    Q8_1 = 9, "Q8_1", 32, 2 + 2 + 32, Full;
    Q2_K = 10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, Full;
    Q3_K = 11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, Full;
    Q4_K = 12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, Full;
    Q5_K = 13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, Full;
    Q6_K = 14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, Full;
    Q8_K = 15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8, Full;
    IQ2_XXS = 16, "IQ2_XXS", QK_K, 2 + QK_K / 4, Full;
    IQ2_XS = 17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, Full;
    IQ3_XXS = 18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, Full;
    IQ1_S = 19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, Full;
    IQ4_NL = 20, "IQ4_NL", 32, 2 + 16, Full;
    IQ3_S = 21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, Full;
    IQ2_S = 22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, Full;
    IQ4_XS = 23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, Full;
    I8 = 24, "I8", 1, 1, SizeOnly;
    I16 = 25, "I16", 1, 2, SizeOnly;
    I32 = 26, "I32", 1, 4, SizeOnly;
    I64 = 27, "I64", 1, 8, SizeOnly;
    F64 = 28, "F64", 1, 8, SizeOnly;
    IQ1_M = 29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, Full;
    BF16 = 30, "BF16", 1, 2, Full;
    TQ1_0 = 34, "TQ1_0", QK_K, 2 + 4 * 13, SizeOnly;
    TQ2_0 = 35, "TQ2_0", QK_K, 2 + 64, SizeOnly;
    MXFP4 = 39, "MXFP4", 32, 1 + 16, SizeOnly;
}

impl GgmlType {
    /// The type with ggml id `id`, or `None` for an id phiq does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPE_TABLE.iter().find(|f| f.id == id).map(|f| f.ty)
    }

    /// The type named `name` (ggml's spelling, case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TYPE_TABLE
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.ty)
    }

    pub const fn facts(self) -> &'static TypeFacts {
        // The table is in the enum's declaration order (the macro writes both).
        &TYPE_TABLE[self as usize]
    }

    pub const fn id(self) -> u32 {
        self.facts().id
    }
    pub const fn name(self) -> &'static str {
        self.facts().name
    }
    pub const fn block_size(self) -> u64 {
        self.facts().block_size
    }
    pub const fn type_size(self) -> u64 {
        self.facts().type_size
    }
    pub fn is_supported(self) -> bool {
        self.facts().support == Support::Full
    }

    /// Bytes taken by `n_elements` elements, or `None` if `n_elements` is not a
    /// whole number of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let f = self.facts();
        if !n_elements.is_multiple_of(f.block_size) {
            return None;
        }
        (n_elements / f.block_size).checked_mul(f.type_size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_ids_unique() {
        for (i, f) in TYPE_TABLE.iter().enumerate() {
            assert_eq!(f.ty as usize, i, "{} out of order", f.name);
            assert_eq!(GgmlType::from_id(f.id), Some(f.ty));
            assert_eq!(GgmlType::from_name(f.name), Some(f.ty));
        }
        assert_eq!(GgmlType::from_id(4), None); // Q4_2, removed from ggml
        assert_eq!(GgmlType::from_id(31), None); // Q4_0_4_4, removed
    }

    #[test]
    fn known_sizes() {
        assert_eq!(GgmlType::Q4_0.type_size(), 18);
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q8_K.type_size(), 292);
        assert_eq!(GgmlType::IQ4_XS.type_size(), 136);
        assert_eq!(GgmlType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
