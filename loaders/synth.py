"""Deterministic synthetic court feed (docs/FEED.md, docs/DOCUMENTS.md) and the probes that check it.

Owns *generation only*: it writes JSON Lines feed files and probe files and never opens,
reads or writes the store. The loader (`sanction_service.loaders.feed`) and the service consume its output
like any court feed.

Public API
----------
- `generate_events(seed, listings, *, start)` yields feed events (dicts) in feed order.
- `generate_probes(seed, listings, *, never_listed, start)` yields probe records.
- `write_feed(path, seed, listings, *, progress, start)` / `write_probes(...)` write JSON Lines
  (`ensure_ascii=False`, `separators=(",", ":")`) and return the number of lines.
- `python -m sanction_service.loaders.synth --seed 1 --listings 100000 --out feed.jsonl --probes probes.jsonl`

Determinism and memory
----------------------
Same (seed, listings, start) gives byte-identical output; nothing reads the clock, the global
`random` or `hash()`. Everything a probe needs to know about listing i (kind, documents,
fate, dates) is a pure function of (seed, i, listings, start): its random draws are 16-bit
words reserved for it in the output of a `random.Random` derived from (seed, i // 256), one
per block of 256 listings (seeding a Random per listing would cost ~6 µs, the whole budget
of an event). Descriptive content that probes never look at (names, courts, case numbers,
amounts, exemption windows) comes from one sequential `random.Random(seed)`.

State is bounded: follow-ups wait in a heap for at most 30 feed days (a few thousand entries at
1 M listings), repeat debtors are looked up only inside their 256-listing block, and EXPIRED
deletions come from a second cursor that walks the listings two years behind the main one.

Identity numbers are unique by construction, not by luck: resident IDs are a bijection
(a table-driven Feistel network) of (listing index, slot) onto (region, birth date, sequence
000-899), USCC organisation codes and passport numbers likewise. So probes can say exactly
which documents the feed restricts without having seen the feed.

Feed shape
----------
- Time: listing i is published at a jittered instant of the i-th of `listings` equal slots
  between `start` - 3 years and `start` (+08:00); `listed_on` is that day minus 0-7 days.
  `occurred_at` never decreases. Follow-ups (EXTEND, CORRECT, EXEMPT: 1-20 days later;
  DELIST/PERFORM: 21-30 days later, always the listing's last event) are interleaved at
  their own time; whatever is still pending at the end is flushed in time order.
- DELIST with reason EXPIRED happens only where it is true: at the listing's expiry, two
  years after listing, and only if that falls before `start`.
- `event_id` is f"{listing_id}:{type.lower()}" (each type at most once per listing);
  `listing_id` is f"L{index:08d}".
- Resident IDs never use sequence numbers 900-999: 900-979 are reserved for NEVER_LISTED
  probes, 980-999 for the showcase.

Showcase (fixed, independent of seed, at the very start when listings >= 3; they count as
three of the `listings`; their `occurred_at` is the feed start, their dates are fixed):
  1. DEMO-PERSON-1: PERSON 张伟 RESIDENT_ID 110105198001019918, DISHONEST, (2023)京0105执1234号,
     北京市朝阳区人民法院, listed 2023-06-01, no expiry, no follow-ups.
  2. DEMO-ORG-1: ORGANIZATION 上海示例贸易有限公司 USCC 91310115MA1FL8X25K, CONSUMPTION_RESTRICTION,
     (2024)沪0115执567号, 上海市浦东新区人民法院, listed 2024-03-15, expires 2029-03-15,
     LEGAL_REPRESENTATIVE 李娜 RESIDENT_ID 310115198503129826.
  3. DEMO-EXEMPT-1: PERSON 王芳 RESIDENT_ID 440305199005209868, DISHONEST, (2024)粤0305执89号,
     深圳市南山区人民法院, listed 2024-01-10, expires 2028-01-10, then EXEMPT for FLIGHT
     2026-01-01..2027-12-31, reference (2024)粤0305执89号之一.
`SHOWCASE` holds these documents; the module asserts the numbers above at import.

Probes
------
`{"document": {"type", "number", "country"}, "expect", "listing_id", "as_of"}` where expect is
- LISTED: the document is the current subject document (or a bound passport, or the USCC of
  an organisation) of a listing that is still active at the end of the feed;
- ORG_PERSON: a current restricted person of an active ORGANIZATION listing (and not LISTED);
- LIFTED: every listing that names the document was lifted (DELIST or PERFORM);
- CORRECTED_AWAY: a CORRECT replaced the document and no listing names it any more;
- NEVER_LISTED: a valid resident ID that no event of any feed of this generator contains.
`as_of` is a date on which the expectation holds: listed_on for LISTED, ORG_PERSON and
CORRECTED_AWAY (listings restrict from listed_on, and no exemption window can start that
early), the lifting date for LIFTED, `start` for NEVER_LISTED. Use it: most listings have
expired by today's date. Documents named by several listings are judged over all of them.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import datetime
import heapq
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Iterator

__all__ = [
    "SHOWCASE",
    "generate_events",
    "generate_probes",
    "write_feed",
    "write_probes",
    "main",
]

DEFAULT_START = datetime.date(2024, 1, 1)
BLOCK = 256  # repeat debtors reuse a person from earlier in the same block of listings
PROBE_SAMPLE_LISTINGS = 100_000  # above this, probes cover evenly spaced whole blocks
SLOTS = 6  # resident-ID slots per listing: subject, corrected subject, 3 restricted, corrected rep
NEVER_SEQ_BASE, NEVER_SEQ_COUNT = 900, 80  # sequences 900-979: probes only, never in the feed

# --------------------------------------------------------------------------- tables

# (region code, case-number abbreviation, basic court, company-name prefix). The court code
# in a case number is the abbreviation plus the last four digits of the county code.
_COURT_REGIONS = [
    ("110101", "京", "北京市东城区人民法院", "北京"),
    ("110102", "京", "北京市西城区人民法院", "北京"),
    ("110105", "京", "北京市朝阳区人民法院", "北京"),
    ("110106", "京", "北京市丰台区人民法院", "北京"),
    ("110108", "京", "北京市海淀区人民法院", "北京"),
    ("110112", "京", "北京市通州区人民法院", "北京"),
    ("110114", "京", "北京市昌平区人民法院", "北京"),
    ("110115", "京", "北京市大兴区人民法院", "北京"),
    ("120101", "津", "天津市和平区人民法院", "天津"),
    ("120104", "津", "天津市南开区人民法院", "天津"),
    ("120116", "津", "天津市滨海新区人民法院", "天津"),
    ("130102", "冀", "石家庄市长安区人民法院", "石家庄"),
    ("130203", "冀", "唐山市路北区人民法院", "唐山"),
    ("130602", "冀", "保定市竞秀区人民法院", "保定"),
    ("140105", "晋", "太原市小店区人民法院", "太原"),
    ("150102", "内", "呼和浩特市新城区人民法院", "呼和浩特"),
    ("210102", "辽", "沈阳市和平区人民法院", "沈阳"),
    ("210202", "辽", "大连市中山区人民法院", "大连"),
    ("220102", "吉", "长春市南关区人民法院", "长春"),
    ("230102", "黑", "哈尔滨市道里区人民法院", "哈尔滨"),
    ("230103", "黑", "哈尔滨市南岗区人民法院", "哈尔滨"),
    ("310101", "沪", "上海市黄浦区人民法院", "上海"),
    ("310104", "沪", "上海市徐汇区人民法院", "上海"),
    ("310105", "沪", "上海市长宁区人民法院", "上海"),
    ("310112", "沪", "上海市闵行区人民法院", "上海"),
    ("310115", "沪", "上海市浦东新区人民法院", "上海"),
    ("320102", "苏", "南京市玄武区人民法院", "南京"),
    ("320106", "苏", "南京市鼓楼区人民法院", "南京"),
    ("320205", "苏", "无锡市锡山区人民法院", "无锡"),
    ("320506", "苏", "苏州市吴中区人民法院", "苏州"),
    ("320508", "苏", "苏州市姑苏区人民法院", "苏州"),
    ("320583", "苏", "江苏省昆山市人民法院", "昆山"),
    ("330102", "浙", "杭州市上城区人民法院", "杭州"),
    ("330105", "浙", "杭州市拱墅区人民法院", "杭州"),
    ("330106", "浙", "杭州市西湖区人民法院", "杭州"),
    ("330108", "浙", "杭州市滨江区人民法院", "杭州"),
    ("330203", "浙", "宁波市海曙区人民法院", "宁波"),
    ("330302", "浙", "温州市鹿城区人民法院", "温州"),
    ("330782", "浙", "浙江省义乌市人民法院", "义乌"),
    ("340102", "皖", "合肥市瑶海区人民法院", "合肥"),
    ("340104", "皖", "合肥市蜀山区人民法院", "合肥"),
    ("341302", "皖", "宿州市埇桥区人民法院", "宿州"),
    ("350102", "闽", "福州市鼓楼区人民法院", "福州"),
    ("350203", "闽", "厦门市思明区人民法院", "厦门"),
    ("350206", "闽", "厦门市湖里区人民法院", "厦门"),
    ("360102", "赣", "南昌市东湖区人民法院", "南昌"),
    ("370102", "鲁", "济南市历下区人民法院", "济南"),
    ("370202", "鲁", "青岛市市南区人民法院", "青岛"),
    ("370212", "鲁", "青岛市崂山区人民法院", "青岛"),
    ("370602", "鲁", "烟台市芝罘区人民法院", "烟台"),
    ("410102", "豫", "郑州市中原区人民法院", "郑州"),
    ("410105", "豫", "郑州市金水区人民法院", "郑州"),
    ("410302", "豫", "洛阳市老城区人民法院", "洛阳"),
    ("420102", "鄂", "武汉市江岸区人民法院", "武汉"),
    ("420106", "鄂", "武汉市武昌区人民法院", "武汉"),
    ("420111", "鄂", "武汉市洪山区人民法院", "武汉"),
    ("430102", "湘", "长沙市芙蓉区人民法院", "长沙"),
    ("430104", "湘", "长沙市岳麓区人民法院", "长沙"),
    ("440103", "粤", "广州市荔湾区人民法院", "广州"),
    ("440104", "粤", "广州市越秀区人民法院", "广州"),
    ("440106", "粤", "广州市天河区人民法院", "广州"),
    ("440303", "粤", "深圳市罗湖区人民法院", "深圳"),
    ("440304", "粤", "深圳市福田区人民法院", "深圳"),
    ("440305", "粤", "深圳市南山区人民法院", "深圳"),
    ("440306", "粤", "深圳市宝安区人民法院", "深圳"),
    ("440307", "粤", "深圳市龙岗区人民法院", "深圳"),
    ("440604", "粤", "佛山市禅城区人民法院", "佛山"),
    ("450103", "桂", "南宁市青秀区人民法院", "南宁"),
    ("460106", "琼", "海口市龙华区人民法院", "海口"),
    ("500103", "渝", "重庆市渝中区人民法院", "重庆"),
    ("500105", "渝", "重庆市江北区人民法院", "重庆"),
    ("500112", "渝", "重庆市渝北区人民法院", "重庆"),
    ("510104", "川", "成都市锦江区人民法院", "成都"),
    ("510105", "川", "成都市青羊区人民法院", "成都"),
    ("510107", "川", "成都市武侯区人民法院", "成都"),
    ("520102", "黔", "贵阳市南明区人民法院", "贵阳"),
    ("530102", "云", "昆明市五华区人民法院", "昆明"),
    ("540102", "藏", "拉萨市城关区人民法院", "拉萨"),
    ("610103", "陕", "西安市碑林区人民法院", "西安"),
    ("610113", "陕", "西安市雁塔区人民法院", "西安"),
    ("620102", "甘", "兰州市城关区人民法院", "兰州"),
    ("630102", "青", "西宁市城东区人民法院", "西宁"),
    ("640104", "宁", "银川市兴庆区人民法院", "银川"),
    ("650102", "新", "乌鲁木齐市天山区人民法院", "乌鲁木齐"),
]
_COURT_INDEX = {code: k for k, (code, *_rest) in enumerate(_COURT_REGIONS)}

# Abolished districts still printed on the IDs of people registered there before the
# merger; their cases go to the successor district's court.
_HISTORIC_REGIONS = [
    ("110103", "110101"),  # 崇文区 -> 东城区
    ("110104", "110102"),  # 宣武区 -> 西城区
    ("310103", "310101"),  # 卢湾区 -> 黄浦区
    ("320502", "320508"),  # 苏州市沧浪区 -> 姑苏区
    ("330103", "330105"),  # 杭州市下城区 -> 拱墅区
    ("342301", "341302"),  # 宿县地区宿州市 -> 宿州市埇桥区
]
_PERSON_REGIONS = [code for code, *_ in _COURT_REGIONS] + [old for old, _ in _HISTORIC_REGIONS]
_PERSON_HOME_COURT = list(range(len(_COURT_REGIONS))) + [_COURT_INDEX[new] for _, new in _HISTORIC_REGIONS]

# Approximate population shares (per mille) of the commonest surnames.
_SURNAMES = (
    "王71 李70 张67 刘54 陈45 杨31 黄22 赵20 吴20 周19 徐13 孙13 马12 朱11 胡10 郭10 何9 高9 林9 罗9 "
    "郑8 梁8 谢6 宋6 唐6 许5 韩5 冯5 邓5 曹5 彭5 曾5 肖4 田4 董4 袁4 潘4 于4 蒋4 蔡4 余4 杜4 叶4 "
    "程3 苏3 魏3 吕3 丁3 任3 沈3 姚3 卢3 姜3 崔3 钟3 谭3 陆2 汪2 范2 金2 石2 廖2 贾2 夏2 韦2 付2 "
    "方2 白2 邹2 孟2 熊2 秦2 邱2 江2 尹2 薛2 闫2 段2 雷2 侯2 龙2 史2 陶1 黎1 贺1 顾1 毛1 郝1 龚1 "
    "邵1 万1 钱1 严1 覃1 武1 戴1 莫1 孔1 向1 汤1 欧阳1"
)
_SURNAME_TABLE = [m[1] for m in re.finditer(r"(\D+)(\d+)", _SURNAMES.replace(" ", "")) for _ in range(int(m[2]))]
_MALE_CHARS = (
    "伟刚勇毅俊峰强军平东文辉力明永健世广志义兴良海山仁波宁贵福生龙元全国胜学祥才发武新利清飞彬富顺信子杰"
    "涛昌成康星光天达安岩中茂进林有坚和彪博诚先敬震振壮会思群豪心邦承乐绍功松善厚庆磊民友裕河哲江超浩亮政"
    "谦奇固之翰朗伯宏言若鸣朋斌梁栋维启克伦翔旭鹏泽晨辰士建家致树炎德行时泰盛雄琛钧冠策腾楠榕风航弘"
)
_FEMALE_CHARS = (
    "秀娟英华慧巧美娜静淑惠珠翠雅芝玉萍红娥玲芬芳燕彩春菊兰凤洁梅琳素云莲真环雪荣爱妹霞香月莺媛艳瑞凡佳"
    "嘉琼勤珍贞莉桂娣叶璐娅琦晶妍茜秋珊莎锦黛青倩婷姣婉娴瑾颖露瑶怡婵雁蓓仪荷丹蓉眉君琴蕊薇菁梦岚苑婕馨"
    "琰韵园艺咏卿澜纯毓悦昭冰爽琬茗羽希欣飘育滢馥筠柔竹凝晓欢霄枫芸菲寒伊亚宜可舒影荔丽妮宝"
)
_TRADE_CHARS = "华瑞恒鑫盛达泰丰源通宏信诚德龙兴海天金锦博创新联正明昌隆嘉远安宇中东润辉腾飞祥和凯旭晟峰永顺佳美"
_INDUSTRIES = [
    "科技",
    "贸易",
    "建设工程",
    "房地产开发",
    "实业",
    "投资管理",
    "商贸",
    "餐饮管理",
    "物流",
    "文化传媒",
    "电子",
    "建材",
    "机械设备",
    "食品",
    "服装",
    "网络科技",
    "供应链管理",
    "装饰工程",
    "汽车销售",
    "医药",
]
_OBLIGATIONS = [
    "偿还借款本金及利息",
    "支付货款及逾期付款利息",
    "支付工程款",
    "支付劳动报酬",
    "支付拖欠的房屋租金",
    "赔偿经济损失",
    "支付信用卡透支本息",
    "偿还民间借贷本金及利息",
    "支付违约金",
    "返还购房款",
    "支付案件受理费及保全费",
    "支付承揽报酬",
    "支付抚养费",
    "返还不当得利",
    "支付保证金及利息",
]
# 执 (first enforcement) and 执恢 (resumed) dominate real dockets.
_CASE_TYPES = ["执"] * 68 + ["执恢"] * 22 + ["执保"] * 4 + ["执异"] * 3 + ["执复"] * 2 + ["执监"]
_DELIST_REASONS = (  # 128 entries: drawn with a 7-bit field
    ["PERFORMED"] * 38
    + ["SETTLED"] * 26
    + ["CREDITOR_APPLICATION"] * 13
    + ["NO_ASSETS"] * 13
    + ["SUSPENDED"] * 6
    + ["NOT_ENFORCED"] * 6
    + ["TERMINATED"] * 13
    + ["EXPIRED"] * 10
    + ["REVOKED"] * 3
)
assert len(_DELIST_REASONS) == 128
_ORG_ROLES = ["PRINCIPAL", "RESPONSIBLE_PERSON", "ACTUAL_CONTROLLER"]
_EXEMPT_MODES = [["FLIGHT"]] * 10 + [["RAIL"]] * 5 + [["FLIGHT", "RAIL"]] * 3 + [["SHIP"]] + [["FLIGHT", "RAIL", "SHIP"]]


def _pools() -> tuple[list[str], list[str], list[str]]:
    """Given names (70 % two characters) and amounts, drawn once with a fixed seed: picking
    from a pool costs one random call where composing costs four."""
    r = random.Random(0x6E616D6573)

    def given(chars: str) -> list[str]:
        return [
            chars[r.randrange(len(chars))] + (chars[r.randrange(len(chars))] if r.random() < 0.7 else "") for _ in range(4096)
        ]

    male, female = given(_MALE_CHARS), given(_FEMALE_CHARS)
    # Unperformed amounts: log-uniform 800 yuan .. 3 M yuan, mostly whole yuan.
    amounts = [
        f"{int(math.exp(r.uniform(math.log(800), math.log(3_000_000))))}.{0 if r.random() < 0.7 else r.randrange(100):02d}"
        for _ in range(16384)
    ]
    return male, female, amounts


_MALE_GIVEN, _FEMALE_GIVEN, _AMOUNTS = _pools()

# --------------------------------------------------------------------------- check characters

_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RIC_CHECK = "10X98765432"
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: k for k, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORGCODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _ric_sum(digits: str, offset: int) -> int:
    return sum(int(c) * w for c, w in zip(digits, _RIC_WEIGHTS[offset:]))


def resident_id(body17: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character (what stdnum.cn.ric computes)."""
    return body17 + _RIC_CHECK[_ric_sum(body17, 0) % 11]


def _orgcode_check(body8: str) -> str:
    # GB 11714: letters count 10..35; a check value of 10 is written X and 11 is written 0.
    c = 11 - sum(int(ch, 36) * w for ch, w in zip(body8, _ORGCODE_WEIGHTS)) % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def uscc_number(prefix8: str, body8: str) -> str:
    """USCC from registration authority + entity type + region, and an organisation code body."""
    s17 = prefix8 + body8 + _orgcode_check(body8)
    total = sum(_USCC_VALUE[c] * w for c, w in zip(s17, _USCC_WEIGHTS))
    return s17 + _USCC_ALPHABET[-total % 31]


_ORG_TABLES: list = []


def _org_tables() -> tuple:
    """Per 4-digit half of an all-digit organisation code: its share of both check sums,
    so the feed's USCCs cost table lookups instead of 17-character loops."""
    if not _ORG_TABLES:
        d4 = [f"{v:04d}" for v in range(10_000)]
        digits = [[int(c) for c in s] for s in d4]
        w = _ORGCODE_WEIGHTS
        u = _USCC_WEIGHTS
        _ORG_TABLES.extend(
            [
                d4,
                [ds[0] * w[0] + ds[1] * w[1] + ds[2] * w[2] + ds[3] * w[3] for ds in digits],
                [ds[0] * w[4] + ds[1] * w[5] + ds[2] * w[6] + ds[3] * w[7] for ds in digits],
                [ds[0] * u[8] + ds[1] * u[9] + ds[2] * u[10] + ds[3] * u[11] for ds in digits],
                [ds[0] * u[12] + ds[1] * u[13] + ds[2] * u[14] + ds[3] * u[15] for ds in digits],
                [sum(_USCC_VALUE[c] * wt for c, wt in zip("91" + row[0], u)) for row in _COURT_REGIONS],
            ]
        )
    return tuple(_ORG_TABLES)


# --------------------------------------------------------------------------- mixing

_M64 = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-distributed 64-bit hash."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class _Perm:
    """A keyed bijection of [0, a*b) onto pairs (x < a, y < b): the injectivity that keeps
    document numbers unique. A four-round Feistel network on mixed radix; each round adds
    a table-driven function of the other half, which keeps it invertible whatever the
    tables hold, and table lookups are much cheaper than arithmetic hashing in CPython."""

    __slots__ = ("a", "b", "t1", "t2", "t3", "t4")

    def __init__(self, a: int, b: int, rng: random.Random):
        self.a, self.b = a, b
        self.t1 = [rng.getrandbits(32) % b for _ in range(a)]
        self.t2 = [rng.getrandbits(16) % a for _ in range(4096)]
        self.t3 = [rng.getrandbits(32) % b for _ in range(a)]
        self.t4 = [rng.getrandbits(16) % a for _ in range(4096)]

    def __call__(self, u: int) -> tuple[int, int]:
        a, b = self.a, self.b
        x, y = u % a, u // a
        y = (y + self.t1[x]) % b
        x = (x + self.t2[y & 4095] + (y >> 12)) % a
        y = (y + self.t3[x]) % b
        x = (x + self.t4[y & 4095] + (y >> 12)) % a
        return x, y


def _add_years(d: datetime.date, years: int) -> datetime.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February in a common year
        return d.replace(year=d.year + years, day=28)


_EPOCH_ORD = datetime.date(1970, 1, 1).toordinal()
_DAY = 86400
_HHMM = [f"T{h:02d}:{m:02d}" for h in range(24) for m in range(60)]
_SS = [f":{s:02d}+08:00" for s in range(60)]


def _dayno(d: datetime.date) -> int:
    return d.toordinal() - _EPOCH_ORD


# --------------------------------------------------------------------------- the fate of listing i

# Positions in a fate tuple.
(
    _T,
    _LISTED,
    _EXPIRES,
    _ORG,
    _DISHONEST,
    _GROUND,
    _PERSON,
    _PASSPORT,
    _NRP,
    _LIFT,
    _REASON,
    _LIFT_T,
    _LIFT_DAY,
    _EXT_YEARS,
    _EXT_T,
    _COR,
    _COR_T,
    _EXM,
    _EXM_T,
    _EXM_TARGET,
) = range(20)
_LIFT_DELIST, _LIFT_PERFORM = 1, 2
_COR_COURT, _COR_NAME, _COR_DOCUMENT, _COR_RESTRICTED = 1, 2, 3, 4
_EXPIRED_LAG = 731 * _DAY  # an EXPIRED deletion is published this long after the listing
_W = 24  # 16-bit draws per listing (see _Ctx.fate)
assert BLOCK == 256  # fate() addresses blocks with shifts and masks


class _Ctx:
    """Keys and tables for one (seed, listings, start), and the pure functions of listing i
    that both the feed and the probes use."""

    def __init__(self, seed: int, listings: int, start: datetime.date):
        if listings < 0:
            raise ValueError("listings must be >= 0")
        self.seed, self.n, self.start = seed, listings, start
        self.first = 3 if listings >= 3 else 0
        # Fates come from one derived Random per block of listings, seeded by (seed, block).
        self.block_key = _mix(seed * 0x2545F4914F6CDD1D + 0x632BE59BD9B4E019) << 40
        self._blocks: dict[int, array.array] = {}

        self.day0, self.day_end = _dayno(_add_years(start, -3)), _dayno(start)
        self.t0, self.t_end = self.day0 * _DAY, self.day_end * _DAY
        self.span = self.t_end - self.t0

        # Born so that the age at listing is 18..80 for any listed_on in [start-3y, start].
        birth0 = _add_years(start, -80)
        self.birth_days = (_add_years(start, -21) - birth0).days + 1
        self.rid_space = len(_PERSON_REGIONS) * self.birth_days
        if listings * SLOTS > self.rid_space * NEVER_SEQ_BASE or listings * 2 > 100_000_000:
            raise ValueError("too many listings for unique document numbers")
        tables = random.Random(_mix(seed ^ 0x5EED5EED) << 8 | 1)
        self.org_perm = _Perm(10_000, 10_000, tables)
        self.pass_perm = _Perm(10_000, 10_000, tables)
        rid_perm = _Perm(NEVER_SEQ_BASE, self.rid_space, tables)
        never_perm = _Perm(NEVER_SEQ_COUNT, self.rid_space, tables)

        # The resident ID check character is a weighted sum: precompute each part's share.
        self.birth_str = []
        d, one = birth0, datetime.timedelta(days=1)
        for _ in range(self.birth_days):
            self.birth_str.append(d.strftime("%Y%m%d"))
            d += one
        w = _RIC_WEIGHTS[6:14]
        self.birth_sum = [
            int(s[0]) * w[0]
            + int(s[1]) * w[1]
            + int(s[2]) * w[2]
            + int(s[3]) * w[3]
            + int(s[4]) * w[4]
            + int(s[5]) * w[5]
            + int(s[6]) * w[6]
            + int(s[7]) * w[7]
            for s in self.birth_str
        ]
        self.region_sum = [_ric_sum(code, 0) for code in _PERSON_REGIONS]
        self.seq_str = [f"{q:03d}" for q in range(1000)]
        self.seq_sum = [_ric_sum(f"{q:03d}", 14) for q in range(1000)]
        self._datestr: dict[int, str] = {}
        self._exp: dict[int, int] = {}
        self.rid = self._rid_maker(rid_perm, 0)
        self._never_rid = self._rid_maker(never_perm, NEVER_SEQ_BASE)
        self.fate = self._fate_maker()

    # ---- time
    def date_str(self, day: int) -> str:
        s = self._datestr.get(day)
        if s is None:
            s = self._datestr[day] = datetime.date.fromordinal(day + _EPOCH_ORD).isoformat()
        return s

    def stamp(self, t: int) -> str:
        day, sec = divmod(t, _DAY)
        m, s = divmod(sec, 60)
        return (self._datestr.get(day) or self.date_str(day)) + _HHMM[m] + _SS[s]

    def plus_years(self, day: int, years: int) -> int:
        key = day * 8 + years
        e = self._exp.get(key)
        if e is None:
            d = datetime.date.fromordinal(day + _EPOCH_ORD)
            e = self._exp[key] = _dayno(_add_years(d, years))
        return e

    # ---- documents
    def _rid_maker(self, perm: _Perm, seq_base: int) -> Callable[[int], tuple[str, int, int]]:
        a, b = perm.a, perm.b
        t1, t2, t3, t4 = perm.t1, perm.t2, perm.t3, perm.t4
        days = self.birth_days
        regions, rsum = _PERSON_REGIONS, self.region_sum
        bstr, bsum, sstr, ssum = self.birth_str, self.birth_sum, self.seq_str, self.seq_sum

        def rid(u: int) -> tuple[str, int, int]:
            """(number, region index, sequence) of the resident ID with unique index u."""
            x, y = u % a, u // a  # _Perm.__call__ inlined: this runs once or more per listing
            y = (y + t1[x]) % b
            x = (x + t2[y & 4095] + (y >> 12)) % a
            y = (y + t3[x]) % b
            x = (x + t4[y & 4095] + (y >> 12)) % a
            seq = x + seq_base
            reg, day = divmod(y, days)
            return (regions[reg] + bstr[day] + sstr[seq] + _RIC_CHECK[(rsum[reg] + bsum[day] + ssum[seq]) % 11], reg, seq)

        return rid

    def never_rid(self, k: int) -> str:
        return self._never_rid(k)[0]

    def uscc(self, u: int, reg: int | None = None) -> tuple[str, int]:
        """(USCC, court-region index) of the organisation with unique index u < 10**8.
        The organisation code alone is unique, so the region may be imposed."""
        d4, oc_hi, oc_lo, us_hi, us_lo, us_pre = _org_tables()
        lo, hi = self.org_perm(u)
        if reg is None:
            reg = ((hi * 10_000 + lo) * 2654435761 >> 7) % len(_COURT_REGIONS)
        c = 11 - (oc_hi[hi] + oc_lo[lo]) % 11
        occ = "X" if c == 10 else "0" if c == 11 else str(c)
        total = us_pre[reg] + us_hi[hi] + us_lo[lo] + _USCC_VALUE[occ] * 28
        return f"91{_COURT_REGIONS[reg][0]}{d4[hi]}{d4[lo]}{occ}{_USCC_ALPHABET[-total % 31]}", reg

    def passport(self, i: int) -> str:
        lo, hi = self.pass_perm(i % 100_000_000)
        return f"E{hi:04d}{lo:04d}"

    # ---- fate
    #
    # Every random decision about listing i is one of _W 16-bit draws reserved for it in its
    # block's array: a derived Random per block of 256 listings, seeded by (seed, block), so
    # fate(i) is a pure function of (seed, i) that costs a few small-int comparisons.
    # (Seeding a Random per listing would cost ~6 µs, the whole budget of an event.)

    def words(self, b: int) -> array.array:
        w = self._blocks.get(b)
        if w is None:
            if len(self._blocks) >= 4:  # the main loop, the EXPIRED cursor, probes: a few blocks
                del self._blocks[next(iter(self._blocks))]
            w = array.array("H")
            w.frombytes(random.Random(self.block_key | b).randbytes(BLOCK * _W * 2))
            if sys.byteorder == "big":
                w.byteswap()
            self._blocks[b] = w
        return w

    def _fate_maker(self) -> Callable[[int], tuple]:
        n, span, t0, t_end, day0, first = self.n, self.span, self.t0, self.t_end, self.day0, self.first
        plus_years, words, blocks = self.plus_years, self.words, self._blocks
        DAY = _DAY
        reasons = _DELIST_REASONS
        delay_span = 19 * DAY
        quiet = (0, None, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        expiry: dict[int, int] = {}  # listed_on -> listed_on + 2 years (day numbers)

        def fate(i: int) -> tuple:
            w = blocks.get(i >> 8) or words(i >> 8)
            o = (i & 255) * _W
            org = w[o] < 6554  # 10 %
            dishonest = w[o + 1] < 49152  # 75 %
            g = w[o + 2]
            ground = 1 if g < 19661 else 2 + g % 5  # ground 1 (no fixed end): 30 %
            lo = i * span // n
            t = t0 + lo + (((w[o + 12] << 16) | w[o + 13]) * ((i + 1) * span // n - lo) >> 32)
            listed = t // DAY - (w[o + 3] & 7)
            if listed < day0:
                listed = day0
            expires = None if ground == 1 else expiry.get(listed) or expiry.setdefault(listed, plus_years(listed, 2))

            person = i  # whose resident ID and passport the subject carries
            passport = False
            nrp = 0
            if org:
                v = w[o + 6]
                nrp = 1 if v < 39322 else 2 if v < 58982 else 3
            else:
                if w[o + 4] < 2621:  # tries to be a repeat debtor: 4 %
                    lo_b = max(i & ~255, first)
                    if i > lo_b:
                        s = i - 1 - w[o + 14] % (i - lo_b)
                        os = (s & 255) * _W
                        # Only a PERSON listing that is not itself a repeat lends its person,
                        # so every person is introduced by a listing of their own.
                        if w[os] >= 6554 and w[os + 4] >= 2621:
                            person = s
                            passport = w[os + 5] < 3277
                if person == i:
                    passport = w[o + 5] < 3277  # 5 %

            v = w[o + 8]
            lift = _LIFT_DELIST if v < 5243 else _LIFT_PERFORM if v < 8520 else 0  # 8 %, 5 %
            reason = reasons[w[o + 9] & 127] if lift == _LIFT_DELIST else None
            extend = expires is not None and w[o + 10] < 1966 and reason != "EXPIRED"  # 3 %
            correct = w[o + 11] < 1311  # 2 %
            exempt = w[o + 7] < 1311  # 2 %
            if reason == "EXPIRED" and (expires is None or t + _EXPIRED_LAG > t_end):
                reason = "TERMINATED"  # it would not have expired before the end of the feed
            if not (lift or extend or correct or exempt):
                return (t, listed, expires, org, dishonest, ground, person, passport, nrp) + quiet

            if reason == "EXPIRED":
                lift_t, lift_day = t + _EXPIRED_LAG, expires
            elif lift:
                lift_t = t + 21 * DAY + (w[o + 22] * 9 * DAY >> 16)
                lift_day = max(lift_t // DAY - (w[o + 21] & 3), listed + 1)
            else:
                lift_t = lift_day = 0
            cor = 0
            if correct:
                v = w[o + 19] * 100 >> 16
                if org:
                    cor = _COR_COURT if v < 35 else _COR_NAME if v < 55 else _COR_DOCUMENT if v < 75 else _COR_RESTRICTED
                else:
                    cor = _COR_COURT if v < 40 else _COR_NAME if v < 70 else _COR_DOCUMENT
            return (
                t,
                listed,
                expires,
                org,
                dishonest,
                ground,
                person,
                passport,
                nrp,
                lift,
                reason,
                lift_t,
                lift_day,
                1 + (w[o + 18] * 3 >> 16) if extend else 0,
                t + DAY + (w[o + 15] * delay_span >> 16),
                cor,
                t + DAY + (w[o + 16] * delay_span >> 16),
                1 if exempt else 0,
                t + DAY + (w[o + 17] * delay_span >> 16),
                w[o + 20] * 3 >> 16,
            )

        return fate


def _listing_id(i: int) -> str:
    return f"L{i:08d}"


# --------------------------------------------------------------------------- showcase


def _showcase() -> dict:
    zhang = resident_id("110105" + "19800101" + "991")
    li = resident_id("310115" + "19850312" + "982")
    wang = resident_id("440305" + "19900520" + "986")
    org = uscc_number("91310115", "MA1FL8X2")
    return {
        "DEMO-PERSON-1": {
            "kind": "PERSON",
            "name": "张伟",
            "document": {"type": "RESIDENT_ID", "number": zhang},
            "list_type": "DISHONEST",
            "case_number": "(2023)京0105执1234号",
            "court": "北京市朝阳区人民法院",
            "listed_on": "2023-06-01",
            "expires_on": None,
        },
        "DEMO-ORG-1": {
            "kind": "ORGANIZATION",
            "name": "上海示例贸易有限公司",
            "document": {"type": "USCC", "number": org},
            "list_type": "CONSUMPTION_RESTRICTION",
            "case_number": "(2024)沪0115执567号",
            "court": "上海市浦东新区人民法院",
            "listed_on": "2024-03-15",
            "expires_on": "2029-03-15",
            "restricted_persons": [
                {"role": "LEGAL_REPRESENTATIVE", "name": "李娜", "document": {"type": "RESIDENT_ID", "number": li}},
            ],
        },
        "DEMO-EXEMPT-1": {
            "kind": "PERSON",
            "name": "王芳",
            "document": {"type": "RESIDENT_ID", "number": wang},
            "list_type": "DISHONEST",
            "case_number": "(2024)粤0305执89号",
            "court": "深圳市南山区人民法院",
            "listed_on": "2024-01-10",
            "expires_on": "2028-01-10",
            "exemption": {
                "modes": ["FLIGHT"],
                "valid_from": "2026-01-01",
                "valid_to": "2027-12-31",
                "reference": "(2024)粤0305执89号之一",
            },
        },
    }


SHOWCASE = _showcase()
assert SHOWCASE["DEMO-PERSON-1"]["document"]["number"] == "110105198001019918"
assert SHOWCASE["DEMO-ORG-1"]["document"]["number"] == "91310115MA1FL8X25K"
assert SHOWCASE["DEMO-ORG-1"]["restricted_persons"][0]["document"]["number"] == "310115198503129826"
assert SHOWCASE["DEMO-EXEMPT-1"]["document"]["number"] == "440305199005209868"


def _showcase_events(occurred_at: str) -> list[dict]:
    details: dict[str, dict[str, object]] = {
        "DEMO-PERSON-1": dict(grounds=1, obligation="偿还借款本金及利息", amount_unperformed="386000.00"),
        "DEMO-ORG-1": dict(obligation="支付货款及逾期付款利息", amount_unperformed="1250000.00"),
        "DEMO-EXEMPT-1": dict(grounds=3, obligation="支付工程款", amount_unperformed="52800.00"),
    }
    events = []
    for lid, s in SHOWCASE.items():
        events.append(
            {
                "event_id": f"{lid}:list",
                "type": "LIST",
                "occurred_at": occurred_at,
                "listing_id": lid,
                "list_type": s["list_type"],
                "case_number": s["case_number"],
                "court": s["court"],
                "listed_on": s["listed_on"],
                "expires_on": s["expires_on"],
                "subject": {"kind": s["kind"], "name": s["name"], "document": dict(s["document"])},
                "extra_documents": [],
                "restricted_persons": [
                    {"role": p["role"], "name": p["name"], "document": dict(p["document"])}
                    for p in s.get("restricted_persons", [])
                ],
                **details[lid],
            }
        )
    ex = SHOWCASE["DEMO-EXEMPT-1"]
    events.append(
        {
            "event_id": "DEMO-EXEMPT-1:exempt",
            "type": "EXEMPT",
            "occurred_at": occurred_at,
            "listing_id": "DEMO-EXEMPT-1",
            "document": dict(ex["document"]),
            "modes": list(ex["exemption"]["modes"]),
            "valid_from": ex["exemption"]["valid_from"],
            "valid_to": ex["exemption"]["valid_to"],
            "reference": ex["exemption"]["reference"],
        }
    )
    return events


# --------------------------------------------------------------------------- generation
#
# The feed is produced as JSON text directly (json.dumps alone costs ~6 µs per LIST event
# here); generate_events parses it back. Every string spliced into the text comes from the
# tables above or from digits, none needs escaping (checked below), and fields appear in
# the order docs/FEED.md lists them in, so the text is exactly what
# json.dumps(event, ensure_ascii=False, separators=(",", ":")) would give for the parsed event.


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _json_safe(s: str) -> bool:
    return json.dumps(s, ensure_ascii=False) == f'"{s}"'


assert all(_json_safe(s) for row in _COURT_REGIONS for s in row)
assert all(
    _json_safe(s)
    for s in _SURNAME_TABLE
    + list(_MALE_CHARS + _FEMALE_CHARS + _TRADE_CHARS)
    + _INDUSTRIES
    + _OBLIGATIONS
    + _CASE_TYPES
    + _DELIST_REASONS
)


def _feed_lines(seed: int, listings: int, start: datetime.date) -> Iterator[str]:
    """The feed's lines (without newline) in feed order."""
    ctx = _Ctx(seed, listings, start)
    n = listings
    rng = random.Random(seed)
    rnd = rng.random
    if n >= 3:
        stamp0 = ctx.stamp(ctx.t0)
        for ev in _showcase_events(stamp0):
            yield _dumps(ev)

    bits = rng.getrandbits
    n_courts = len(_COURT_REGIONS)
    n_sur, n_trade, n_ind, n_obl = len(_SURNAME_TABLE), len(_TRADE_CHARS), len(_INDUSTRIES), len(_OBLIGATIONS)
    surnames, male, female, trade = _SURNAME_TABLE, _MALE_GIVEN, _FEMALE_GIVEN, _TRADE_CHARS
    courts, industries, obligations, amounts = _COURT_REGIONS, _INDUSTRIES, _OBLIGATIONS, _AMOUNTS
    case_types = (_CASE_TYPES * 2)[:128]
    court_codes = [f"{c[1]}{c[0][2:]}" for c in _COURT_REGIONS]
    court_names = [c[2] for c in _COURT_REGIONS]
    home_court = _PERSON_HOME_COURT
    modes_json = [",".join(f'"{m}"' for m in modes) for modes in _EXEMPT_MODES]
    date_str, datestr_cache, stamp = ctx.date_str, ctx._datestr, ctx.stamp
    fate, rid, uscc = ctx.fate, ctx.rid, ctx.uscc

    def person_name(is_male: bool) -> str:
        return surnames[int(rnd() * n_sur)] + (male if is_male else female)[bits(12)]

    def org_name(reg: int) -> str:
        a = int(rnd() * n_trade)
        b = (a + 1 + int(rnd() * (n_trade - 1))) % n_trade
        return f"{courts[reg][3]}{trade[a]}{trade[b]}{industries[int(rnd() * n_ind)]}有限公司"

    def case_number(reg: int, listed_year: int) -> str:
        r = bits(30)
        # Filed in the listing year (60 %) or up to two years before; sequence numbers skew
        # low (product of two uniforms) and busy courts reach 5 digits.
        y = r & 15
        year = listed_year if y < 10 else listed_year - 1 if y < 15 else listed_year - 2
        seq = 1 + ((r >> 11 & 1023) * (r >> 21) * 18000 >> 19)
        return f"({year}){court_codes[reg]}{case_types[r >> 4 & 127]}{seq}号"

    heap: list = []
    push, pop = heapq.heappush, heapq.heappop
    counter = 0
    block_names: dict[int, str] = {}
    block_of = -1

    # EXPIRED deletions come from a second cursor walking the listings two years behind:
    # their times (slot start + 731 days, plus jitter) grow with the index, so the cursor
    # only has to stay ahead of the current time.
    exp_k = ctx.first
    exp_limit = ctx.t_end - _EXPIRED_LAG
    t0, span_all, words = ctx.t0, ctx.span, ctx.words
    exp_due = 0

    def schedule(when: int, listing_id: str, kind: str, tail: str) -> None:
        """Queue a follow-up event; the counter keeps heap order stable for equal times."""
        nonlocal counter
        counter += 1
        push(
            heap,
            (
                when,
                counter,
                f'{{"event_id":"{listing_id}:{kind.lower()}","type":"{kind}",'
                f'"occurred_at":"{stamp(when)}","listing_id":"{listing_id}",{tail}}}',
            ),
        )

    def expired_upto(limit_t: int) -> None:
        nonlocal exp_k, exp_due
        while exp_k < n:
            k = exp_k
            tk_lo = t0 + k * span_all // n
            if tk_lo > exp_limit:
                break
            if tk_lo + _EXPIRED_LAG > limit_t:
                exp_due = tk_lo + _EXPIRED_LAG
                return
            exp_k += 1
            w, o = words(k >> 8), (k & 255) * _W
            if w[o + 8] >= 5243 or _DELIST_REASONS[w[o + 9] & 127] != "EXPIRED":
                continue  # cheap pre-check on the draws fate() uses
            f = fate(k)
            if f[_REASON] == "EXPIRED":
                schedule(f[_LIFT_T], _listing_id(k), "DELIST", f'"reason":"EXPIRED","effective_on":"{date_str(f[_LIFT_DAY])}"')
        exp_due = 1 << 62

    last_t, last_stamp = -1, ""
    for i in range(ctx.first, n):
        f = fate(i)
        t = f[0]
        if t >= exp_due:
            expired_upto(t)
        while heap and heap[0][0] <= t:
            yield pop(heap)[2]

        lid = f"L{i:08d}"
        listed_s = datestr_cache.get(f[1]) or date_str(f[1])
        expires = f[2]
        listed_year = int(listed_s[:4])
        if i // BLOCK != block_of:
            block_of = i // BLOCK
            block_names.clear()

        if f[3]:  # ORGANIZATION
            number, reg = uscc(i * 2)
            name = org_name(reg)
            doc_j = f'{{"type":"USCC","number":"{number}"}}'
            extras_j = ""
            roles = ["LEGAL_REPRESENTATIVE"]
            if f[8] > 1:
                a = int(rnd() * 3)
                roles.append(_ORG_ROLES[a])
                if f[8] > 2:
                    roles.append(_ORG_ROLES[(a + 1 + int(rnd() * 2)) % 3])
            rps, rp_docs = [], []
            for slot, role in enumerate(roles):
                pnum, _, rseq = rid(i * SLOTS + 2 + slot)
                d = f'{{"type":"RESIDENT_ID","number":"{pnum}"}}'
                rp_docs.append(d)
                rps.append(f'{{"role":"{role}","name":"{person_name(rseq & 1 == 1)}","document":{d}}}')
            rps_j = ",".join(rps)
            court_reg = reg if rnd() < 0.85 else int(rnd() * n_courts)
            sk = "ORGANIZATION"
        else:
            person = f[6]
            number, reg_p, pseq = rid(person * SLOTS)
            if person != i:
                name = block_names[person]
            else:
                name = person_name(pseq & 1 == 1)
                block_names[i] = name
            doc_j = f'{{"type":"RESIDENT_ID","number":"{number}"}}'
            extras_j = f'{{"type":"PASSPORT","number":"{ctx.passport(person)}","country":"CHN"}}' if f[7] else ""
            rps_j = ""
            # Most debtors are enforced by the court where they live or are registered.
            court_reg = home_court[reg_p] if rnd() < 0.85 else int(rnd() * n_courts)
            sk = "PERSON"
        case = case_number(court_reg, listed_year)
        if t != last_t:
            last_t, last_stamp = t, stamp(t)
        if f[4]:
            lt_j, grounds_j = "DISHONEST", f'"grounds":{f[5]},'
        else:
            lt_j, grounds_j = "CONSUMPTION_RESTRICTION", ""
        yield (
            f'{{"event_id":"{lid}:list","type":"LIST","occurred_at":"{last_stamp}","listing_id":"{lid}",'
            f'"list_type":"{lt_j}","case_number":"{case}","court":"{court_names[court_reg]}",'
            f'"listed_on":"{listed_s}","expires_on":{"null" if expires is None else chr(34) + date_str(expires) + chr(34)},'
            f'"subject":{{"kind":"{sk}","name":"{name}","document":{doc_j}}},"extra_documents":[{extras_j}],'
            f'"restricted_persons":[{rps_j}],{grounds_j}"obligation":"{obligations[int(rnd() * n_obl)]}",'
            f'"amount_unperformed":"{amounts[bits(14)]}"}}'
        )

        if not (f[_LIFT] or f[_EXT_YEARS] or f[_COR] or f[_EXM]):
            continue
        # Follow-ups in time order, tracking what the listing says at each step so that an
        # EXEMPT names the document and case number current at that moment.
        todo = []
        if f[_EXT_YEARS]:
            todo.append((f[_EXT_T], 0))
        if f[_COR]:
            todo.append((f[_COR_T], 1))
        if f[_EXM]:
            todo.append((f[_EXM_T], 2))
        todo.sort()
        cur_doc, cur_case = doc_j, case
        for when, what in todo:
            if what == 0:
                tail = f'"expires_on":"{date_str(ctx.plus_years(expires, f[_EXT_YEARS]))}"'
                kind = "EXTEND"
            elif what == 1:
                kind = "CORRECT"
                variant = f[_COR]
                if variant == _COR_COURT:
                    reg2 = int(rnd() * n_courts)
                    cur_case = case_number(reg2, listed_year)
                    tail = f'"case_number":"{cur_case}","court":"{court_names[reg2]}"'
                elif variant == _COR_RESTRICTED:  # a new legal representative
                    pnum, _, rseq = rid(i * SLOTS + 5)
                    rp_docs[0] = f'{{"type":"RESIDENT_ID","number":"{pnum}"}}'
                    rps[0] = f'{{"role":"LEGAL_REPRESENTATIVE","name":"{person_name(rseq & 1 == 1)}","document":{rp_docs[0]}}}'
                    tail = f'"restricted_persons":[{",".join(rps)}]'
                else:
                    if variant == _COR_NAME:
                        name = org_name(reg) if f[3] else person_name(pseq & 1 == 1)
                    elif f[3]:
                        cur_doc = f'{{"type":"USCC","number":"{uscc(i * 2 + 1, reg)[0]}"}}'
                    else:
                        cur_doc = f'{{"type":"RESIDENT_ID","number":"{rid(i * SLOTS + 1)[0]}"}}'
                    tail = f'"subject":{{"kind":"{sk}","name":"{name}","document":{cur_doc}}}'
            else:
                kind = "EXEMPT"
                target = rp_docs[f[_EXM_TARGET] % len(rp_docs)] if f[3] else cur_doc
                vf = when // _DAY + int(rnd() * 20)
                vt = vf + int(rnd() * 15)
                tail = (
                    f'"document":{target},"modes":[{modes_json[int(rnd() * len(modes_json))]}],'
                    f'"valid_from":"{date_str(vf)}","valid_to":"{date_str(vt)}","reference":"{cur_case}之一"'
                )
            schedule(when, lid, kind, tail)
        if f[_LIFT] and f[_REASON] != "EXPIRED":
            when = f[_LIFT_T]
            if f[_LIFT] == _LIFT_DELIST:
                kind, tail = "DELIST", f'"reason":"{f[_REASON]}","effective_on":"{date_str(f[_LIFT_DAY])}"'
            else:
                kind, tail = "PERFORM", f'"performed_on":"{date_str(f[_LIFT_DAY])}"'
            schedule(when, lid, kind, tail)

    expired_upto(1 << 62)
    while heap:
        yield pop(heap)[2]


def generate_events(seed: int, listings: int, *, start: datetime.date = DEFAULT_START) -> Iterator[dict]:
    """Yield feed events (dicts ready for json.dumps) in feed order."""
    loads = json.loads
    for line in _feed_lines(seed, listings, start):
        yield loads(line)


@contextlib.contextmanager
def _open_out(path):
    """A file to write, or stdout for "-" (flushed, not closed)."""
    if str(path) == "-":
        try:
            yield sys.stdout
        finally:
            sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        yield out


def write_feed(
    path, seed: int, listings: int, *, progress: Callable[[int], None] | None = None, start: datetime.date = DEFAULT_START
) -> int:
    """Write the feed as JSON Lines; return the number of events. `path` "-" is stdout.
    `progress(n_events_written)` is called every 65 536 events and at the end."""
    count = 0
    with _open_out(path) as out:
        buf: list[str] = []
        for line in _feed_lines(seed, listings, start):
            buf.append(line)
            if len(buf) == 8192:
                buf.append("")
                out.write("\n".join(buf))
                count += 8192
                buf = []
                if progress is not None and count % 65536 == 0:
                    progress(count)
        if buf:
            buf.append("")
            out.write("\n".join(buf))
            count += len(buf) - 1
        if progress is not None:
            progress(count)
    return count


# --------------------------------------------------------------------------- probes


def _probe(doc_type: str, number: str, expect: str, listing_id, as_of: str) -> dict:
    return {
        "document": {"type": doc_type, "number": number, "country": "CHN"},
        "expect": expect,
        "listing_id": listing_id,
        "as_of": as_of,
    }


def _showcase_probes() -> list[dict]:
    p, o, e = SHOWCASE["DEMO-PERSON-1"], SHOWCASE["DEMO-ORG-1"], SHOWCASE["DEMO-EXEMPT-1"]
    rep = o["restricted_persons"][0]["document"]
    return [
        _probe("RESIDENT_ID", p["document"]["number"], "LISTED", "DEMO-PERSON-1", p["listed_on"]),
        _probe("USCC", o["document"]["number"], "LISTED", "DEMO-ORG-1", o["listed_on"]),
        _probe("RESIDENT_ID", rep["number"], "ORG_PERSON", "DEMO-ORG-1", o["listed_on"]),
        _probe("RESIDENT_ID", e["document"]["number"], "LISTED", "DEMO-EXEMPT-1", e["listed_on"]),
    ]


def _sampled_blocks(ctx: _Ctx) -> Iterator[int]:
    n_blocks = (ctx.n + BLOCK - 1) // BLOCK
    if ctx.n <= PROBE_SAMPLE_LISTINGS:
        yield from range(n_blocks)
        return
    want = max(1, PROBE_SAMPLE_LISTINGS // BLOCK)
    last = -1
    for j in range(want):
        b = j * n_blocks // want
        if b != last:
            last = b
            yield b


def _block_probes(ctx: _Ctx, b: int) -> Iterator[dict]:
    """Exact expectations for every document named in block b. Repeat debtors stay inside
    their block and numbers are unique per (listing, slot), so a block is a closed world."""
    # (type, number) -> [holders [(role 'S'|'R', listing, lifted, listed, lift_day)], corrected away [(listing, listed)]]
    docs: dict[tuple[str, str], list] = {}

    def entry(dtype: str, number: str) -> list:
        e = docs.get((dtype, number))
        if e is None:
            e = docs[(dtype, number)] = [[], []]
        return e

    for i in range(max(b * BLOCK, ctx.first), min((b + 1) * BLOCK, ctx.n)):
        f = ctx.fate(i)
        listed = f[_LISTED]
        hold = (i, f[_LIFT] != 0, listed, f[_LIFT_DAY])
        if f[_ORG]:
            original, reg = ctx.uscc(i * 2)
            if f[_COR] == _COR_DOCUMENT:
                entry("USCC", original)[1].append((i, listed))
                entry("USCC", ctx.uscc(i * 2 + 1, reg)[0])[0].append(("S",) + hold)
            else:
                entry("USCC", original)[0].append(("S",) + hold)
            for slot in range(f[_NRP]):
                number = ctx.rid(i * SLOTS + 2 + slot)[0]
                if slot == 0 and f[_COR] == _COR_RESTRICTED:
                    entry("RESIDENT_ID", number)[1].append((i, listed))
                    entry("RESIDENT_ID", ctx.rid(i * SLOTS + 5)[0])[0].append(("R",) + hold)
                else:
                    entry("RESIDENT_ID", number)[0].append(("R",) + hold)
        else:
            original = ctx.rid(f[_PERSON] * SLOTS)[0]
            if f[_COR] == _COR_DOCUMENT:
                entry("RESIDENT_ID", original)[1].append((i, listed))
                entry("RESIDENT_ID", ctx.rid(i * SLOTS + 1)[0])[0].append(("S",) + hold)
            else:
                entry("RESIDENT_ID", original)[0].append(("S",) + hold)
            if f[_PASSPORT]:
                entry("PASSPORT", ctx.passport(f[_PERSON]))[0].append(("S",) + hold)

    ds = ctx.date_str
    for (dtype, number), (holders, away) in docs.items():
        active = [h for h in holders if not h[2]]
        subject = [h for h in active if h[0] == "S"]
        if subject:
            yield _probe(dtype, number, "LISTED", _listing_id(subject[0][1]), ds(subject[0][3]))
        elif active:
            yield _probe(dtype, number, "ORG_PERSON", _listing_id(active[0][1]), ds(active[0][3]))
        elif holders and not away:
            last = max(holders, key=lambda h: h[4])
            yield _probe(dtype, number, "LIFTED", _listing_id(last[1]), ds(last[4]))
        elif away and not holders:
            yield _probe(dtype, number, "CORRECTED_AWAY", _listing_id(away[0][0]), ds(max(a[1] for a in away)))
        # A document lifted in one listing and corrected away in another gets no probe:
        # nothing restricts it, but no single expectation says why.


def generate_probes(
    seed: int, listings: int, *, never_listed: int | None = None, start: datetime.date = DEFAULT_START
) -> Iterator[dict]:
    """Yield probe records: {"document": {"type", "number", "country"}, "expect":
    "LISTED"|"ORG_PERSON"|"LIFTED"|"CORRECTED_AWAY"|"NEVER_LISTED", "listing_id": str|None,
    "as_of": "YYYY-MM-DD"}. Never runs the feed: each listing's fate is recomputed from
    (seed, index), so sampling a 6 M-listing feed costs only the sampled blocks."""
    ctx = _Ctx(seed, listings, start)
    positives = 0
    if listings >= 3:
        for p in _showcase_probes():
            positives += 1
            yield p
    for b in _sampled_blocks(ctx):
        for p in _block_probes(ctx, b):
            if p["expect"] in ("LISTED", "ORG_PERSON"):
                positives += 1
            yield p
    count = positives if never_listed is None else never_listed
    if count > NEVER_SEQ_COUNT * ctx.rid_space:
        raise ValueError("never_listed is larger than the reserved number space")
    as_of = start.isoformat()
    for k in range(count):
        yield _probe("RESIDENT_ID", ctx.never_rid(k), "NEVER_LISTED", None, as_of)


def write_probes(
    path, seed: int, listings: int, never_listed: int | None = None, *, start: datetime.date = DEFAULT_START
) -> int:
    """Write probes as JSON Lines; return the number written."""
    count = 0
    with _open_out(path) as out:
        for p in generate_probes(seed, listings, never_listed=never_listed, start=start):
            out.write(_dumps(p) + "\n")
            count += 1
    return count


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sanction_service.loaders.synth", description="Write a deterministic synthetic court feed (JSON Lines)."
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--listings", type=int, required=True, help="number of LIST events (incl. 3 showcase)")
    parser.add_argument("--out", help="feed path ('-' for stdout)")
    parser.add_argument("--probes", help="also write probe records to this path")
    parser.add_argument("--never-listed", type=int, default=None, help="NEVER_LISTED probes (default: positives)")
    parser.add_argument(
        "--start",
        type=datetime.date.fromisoformat,
        default=DEFAULT_START,
        help="end of the listing window, YYYY-MM-DD (it starts 3 years earlier)",
    )
    args = parser.parse_args(argv)
    if not args.out and not args.probes:
        parser.error("give --out and/or --probes")
    if args.out:
        began = time.perf_counter()
        report = sys.stderr if args.out != "-" else None

        def progress(k: int) -> None:
            if report is not None:
                print(f"\r{k:,} events", end="", file=report, flush=True)

        n = write_feed(args.out, args.seed, args.listings, progress=progress, start=args.start)
        took = time.perf_counter() - began
        print(
            f"\rwrote {n:,} events ({args.listings:,} listings) to {args.out} in {took:.1f} s "
            f"({args.listings / took if took else 0:,.0f} listings/s)",
            file=sys.stderr,
        )
    if args.probes:
        m = write_probes(args.probes, args.seed, args.listings, args.never_listed, start=args.start)
        print(f"wrote {m:,} probes to {args.probes}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
