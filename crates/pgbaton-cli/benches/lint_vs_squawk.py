#!/usr/bin/env python3
"""pgbaton lint vs squawk on the SQL corpus (tests/fixtures/sql): per statement marked
`-- expect: <rule>` / `-- expect: safe`, hazards found, missed, findings on safe statements, and
the time of each tool over the whole corpus (interleaved runs, median). Run from the repository
root: benches/lint_vs_squawk.py PATH/TO/squawk PATH/TO/pgbaton (see BENCHMARKS.md)."""
import json, subprocess, glob, re, time, os, sys
files = sorted(f for f in glob.glob('tests/fixtures/sql/*.sql') if not f.endswith('00_schema.sql'))
SQ = sys.argv[1]
PB = sys.argv[2]
def stmts(f):
    r = json.loads(subprocess.run([PB,'lint','--format','json','--schema-sql','tests/fixtures/sql/00_schema.sql',f],capture_output=True,text=True).stdout)
    return r
tot = dict(pb_found=0, pb_missed=0, pb_safe=0, sq_found=0, sq_missed=0, sq_safe=0, sq_safe_stmts=0, pb_safe_stmts=0, hazards=0, safe=0, sq_findings=0, pb_findings=0)
for f in files:
    text = open(f).read().split('\n')
    rep = stmts(f)
    starts = [s['line'] for s in rep['statements']]
    # expectations: '-- expect:' lines before statement start
    exp = {}
    for i,st in enumerate(starts):
        j = st-2
        rules=None
        while j>=0 and text[j].strip().startswith('--'):
            m = re.match(r'--\s*expect:\s*(.*)', text[j].strip())
            if m: rules=[r.strip() for r in m.group(1).split(',') if r.strip()!='safe']
            j-=1
        if rules is not None: exp[st]=rules
    def stmt_of(line):
        cand=[s for s in starts if s<=line]
        return max(cand) if cand else starts[0]
    pb = {}
    for fi in rep['findings']:
        pb.setdefault(fi['line'],[]).append(fi['rule'])
    out = subprocess.run([SQ,'--reporter','gcc',f],capture_output=True,text=True).stdout
    sq = {}
    for l in out.splitlines():
        m = re.match(r'.*?:(\d+):(\d+): \w+: (\S+)', l)
        if m:
            sq.setdefault(stmt_of(int(m.group(1))+1),[]).append(m.group(3))
    tot['sq_findings'] += sum(len(v) for v in sq.values()); tot['pb_findings'] += sum(len(v) for v in pb.values())
    for st,rules in exp.items():
        if rules:
            tot['hazards']+=1
            tot['pb_found' if st in pb else 'pb_missed']+=1
            tot['sq_found' if st in sq else 'sq_missed']+=1
            if st not in sq: print('squawk missed', f, st, rules)
            elif True: print('squawk on hazard', f, st, rules, '->', sq[st])
        else:
            tot['safe']+=1
            if st in pb: tot['pb_safe_stmts']+=1; tot['pb_safe']+=len(pb[st])
            if st in sq: tot['sq_safe_stmts']+=1; tot['sq_safe']+=len(sq[st]); print('squawk on safe', f, st, sq[st])
print(json.dumps(tot, indent=1))
import statistics
N=30
ts=[];tp=[]
for _ in range(N):
    t=time.time(); subprocess.run([SQ]+files,capture_output=True); ts.append(time.time()-t)
    t=time.time(); subprocess.run([PB,'lint','--schema-sql','tests/fixtures/sql/00_schema.sql']+files,capture_output=True); tp.append(time.time()-t)
print('median: squawk %.1f ms, pgbaton %.1f ms per run over %d files (%d runs each, interleaved)'%(statistics.median(ts)*1000,statistics.median(tp)*1000,len(files),N))
