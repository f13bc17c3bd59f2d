# Compares two gradient dumps of model_bits.cpp (f32): how many values differ and by how much.
import array, sys
for p in sys.argv[3:]:
    a = array.array('f'); a.frombytes(open(f"{sys.argv[1]}.{p}", 'rb').read())
    b = array.array('f'); b.frombytes(open(f"{sys.argv[2]}.{p}", 'rb').read())
    n = 0; mx = 0; mr = 0; gm = 0
    for x, y in zip(a, b):
        d = abs(x - y); gm = max(gm, abs(x))
        if d > 0: n += 1; mx = max(mx, d); mr = max(mr, d / max(abs(x), 1e-4))
    print(p, 'differ', n, 'of', len(a), 'max abs %.3g' % mx, 'max rel (|g| floor 1e-4) %.3g' % mr, 'max|g| %.3g' % gm)
