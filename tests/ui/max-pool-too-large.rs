// 2^32 values per sample: more than max pooling's u32 winner indices can address.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 65536, 65536],
        max_pool(2),
    }
}

fn main() {}
