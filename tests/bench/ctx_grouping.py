#!/usr/bin/python3
"""How to group exponent contexts for RANS_CTX (docs/format.md 1.4.1):
the bytes plane W-2 would save, in % of the raw data, per tile, with its
contexts taken from plane W-1 (after ROT1) grouped as K ranges (the best
K-1 thresholds, by dynamic programming) or as the K most frequent values
with one shared table for the rest, each context paying for its own
table (1.4 size; scaled by TABLE_COST, 0 = free tables) and a tile using
it only where it saves.  'ideal' is the order-1 entropy gain with one free
table per value.  Entropy estimates, not coded sizes.

  ctx_grouping.py FILE.f32 bf16|fp16|f32 [TILE_BYTES [TABLE_COST]]

Standard library + numpy (Debian python3-numpy).
"""
import sys, numpy as np
def rne(x32, dt):
    if dt=='fp16': return x32.astype(np.float16).view(np.uint16)
    u = x32.view(np.uint32).astype(np.uint64)
    return ((u + 0x7fff + ((u>>16)&1))>>16).astype(np.uint16)
def cost(hist):  # bytes: entropy + 1.4 table estimate (+1% quantisation slack ignored)
    tot=hist.sum()
    if tot==0: return 0.0
    m=hist>0; c=hist[m]
    f=np.maximum(1,np.round(c*4096/tot))
    return -(c*np.log2(c/tot)).sum()/8 + TC*(32 + m.sum() + (f>127).sum())
TC=float(sys.argv[4]) if len(sys.argv)>4 else 1.0
x = np.fromfile(sys.argv[1], dtype='<f4'); dt=sys.argv[2]; tile=int(sys.argv[3]) if len(sys.argv)>3 else 262144
if dt=='f32':
    u = x.view(np.uint32); t=((u<<1)|(u>>31)).astype(np.uint32)
    lo=((t>>16)&0xff).astype(np.int64); hi=(t>>24).astype(np.int64); W=4
else:
    u = rne(x, dt).astype(np.uint32)
    t=((u<<1)|(u>>15))&0xffff
    lo=(t&0xff).astype(np.int64); hi=(t>>8).astype(np.int64); W=2
n_per=tile//W; Ks=[1,2,3,4,6,8]
base_t=0; rng={K:0 for K in Ks}; top={K:0 for K in Ks}; ideal=0
for s in range(0,len(lo),n_per):
    l=lo[s:s+n_per]; h=hi[s:s+n_per]
    J=np.bincount(h*256+l,minlength=65536).reshape(256,256)
    base=cost(J.sum(0)); base_t+=base
    r=J.sum(1,keepdims=True).astype(float); m=J>0
    ideal += -(J[m]*np.log2((J/np.maximum(r,1))[m])).sum()/8
    vals=np.where(J.sum(1)>0)[0]; V=len(vals)
    P=np.vstack([np.zeros((1,256)),np.cumsum(J[vals],axis=0)])
    C=np.full((V+1,V+1),np.inf)
    for a in range(V):
        for b in range(a+1,V+1): C[a,b]=cost(P[b]-P[a])
    # DP: best[k][b] = min cost covering vals[0:b] with k ranges
    best=C[0].copy()
    for K in Ks:
        pass
    bk={1:C[0].copy()}
    for k in range(2,max(Ks)+1):
        prev=bk[k-1]; cur=np.full(V+1,np.inf)
        for b in range(1,V+1):
            cur[b]=min(prev[a]+C[a,b] for a in range(1,b)) if b>1 else np.inf
        bk[k]=np.minimum(cur,prev)
    for K in Ks: rng[K]+=min(base, bk[K][V]+K)
    hc=J.sum(1); order=np.argsort(-hc)
    for K in Ks:
        sel=[e for e in order[:K] if hc[e]>0]; rest=J.sum(0)-J[sel].sum(0)
        c=sum(cost(J[e]) for e in sel)+cost(rest)+1+K
        top[K]+=min(base,c)
raw=len(lo)*W
print(dt,'tile',tile,'ideal %.3f%%'%((base_t-ideal)/raw*100),'ranges',{K:round((base_t-v)/raw*100,3) for K,v in rng.items()},'topK',{K:round((base_t-v)/raw*100,3) for K,v in top.items()})
