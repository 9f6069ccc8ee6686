// Each part has 2^35 and some parameters, under the 2^36 striate supports; together they are
// over it. The macro cannot count a nested network's parameters (they are a constant of its
// type), so the compiler does, and the error is at the outer network's name.
use striate::network;

network! {
    pub struct Widen { input: [65536], fc: linear(524288) }
}

network! {
    pub struct Narrow { input: [524288], fc: linear(65536) }
}

network! {
    struct Both {
        input: [65536],
        widen: Widen -> [524288],
        narrow: Narrow -> [65536],
    }
}

fn main() {}
