"""Cost of 11- vs 12-bit probability precision over the order-0 entropy of
the exponent planes of a safetensors model, in 128 Ki-element tiles.
Usage: /usr/bin/python3 tests/bench/prob_bits.py MODEL.safetensors"""
import numpy as np, json, struct, sys
f=open(sys.argv[1],'rb').read()
hl=struct.unpack('<Q',f[:8])[0]; h=json.loads(f[8:8+hl]); data=f[8+hl:]
arrs=[np.frombuffer(data[v['data_offsets'][0]:v['data_offsets'][1]],dtype='<f4') for k,v in h.items() if k!='__metadata__' and v['dtype']=='F32']
x=np.concatenate(arrs)
u=x.view(np.uint32)
bf=((u+0x7fff+((u>>16)&1))>>16).astype(np.uint16)
fp=x.astype(np.float16).view(np.uint16)
def rot(v,bits): return ((v<<1)|(v>>(bits-1))) & ((1<<bits)-1)
planes={'f32 exp':(rot(u,32)>>24).astype(np.uint8),'bf16 exp':(rot(bf.astype(np.uint32),16)>>8).astype(np.uint8),'fp16 hi':(fp>>8).astype(np.uint8)}
def norm(c,M):
    tot=c.sum(); f=np.where(c>0,np.maximum(1,np.round(c*(1<<M)/tot)),0).astype(np.int64)
    d=(1<<M)-f.sum()
    order=np.argsort(-c)
    i=0
    while d!=0:
        s=order[i% (c>0).sum()]
        if d>0: f[s]+=d; d=0
        elif f[s]>1: f[s]-=1; d+=1
        else: i+=1
    return f
for name,p in planes.items():
    T=131072
    ent=c11=c12=0
    for off in range(0,len(p),T):
        c=np.bincount(p[off:off+T],minlength=256).astype(np.int64)
        nz=c>0; tot=c.sum()
        ent+=-(c[nz]*np.log2(c[nz]/tot)).sum()
        for M in (11,12):
            f=norm(c,M); cost=(c[nz]*(M-np.log2(f[nz]))).sum()
            if M==11: c11+=cost
            else: c12+=cost
    print(f"{name}: entropy {ent/8/1e6:.3f} MB; 11-bit +{(c11/ent-1)*100:.3f}%  12-bit +{(c12/ent-1)*100:.3f}%")
