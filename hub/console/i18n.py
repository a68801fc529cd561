"""The console's message catalogue: English and 中文, chosen by a cookie (or the browser's language)."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "zh")

# key → (English, 中文)
MESSAGES: dict[str, tuple[str, str]] = {
    "title": ("ackhub audit console", "ackhub 审计控制台"),
    "nav.overview": ("Overview", "概览"),
    "nav.feed": ("Live feed", "实时动态"),
    "nav.escalations": ("Escalations", "升级处理"),
    "nav.agencies": ("Agencies", "机构"),
    "nav.permits": ("Permits", "许可证件"),
    "nav.audit": ("Audit", "审计"),
    "nav.record": ("Record", "记录"),
    "signin": ("Sign in", "登录"),
    "signout": ("Sign out", "退出"),
    "signin.help": (
        "Paste an operator token (ackhub token issue --role operator …).",
        "粘贴操作员令牌（ackhub token issue --role operator …）。",
    ),
    "signin.token": ("Operator token", "操作员令牌"),
    "signin.expired": ("Your session ended; please sign in again.", "会话已结束，请重新登录。"),
    "signin.failed": ("Sign-in refused: {why}", "登录被拒绝：{why}"),
    "signed_in_as": ("{who} · jurisdiction {jurisdiction}", "{who} · 管辖 {jurisdiction}"),
    "overview.rpm": ("Records per minute (last hour)", "每分钟记录数（近一小时）"),
    "overview.states": ("Deliveries by state", "各状态投递数"),
    "overview.backlog": ("Backlog per agency (open deliveries)", "各机构积压（未办结投递）"),
    "overview.latency": ("Acknowledgement latency, last hour", "确认时延（近一小时）"),
    "overview.cases": ("Open escalation cases", "未结升级案件"),
    "overview.records_hour": ("{n} records in the last hour", "近一小时 {n} 条记录"),
    "agency": ("Agency", "机构"),
    "any": ("any", "全部"),
    "record_type": ("Record type", "记录类型"),
    "filter": ("Filter", "筛选"),
    "feed.waiting": ("Waiting for events…", "等待事件…"),
    "feed.connected": ("live", "已连接"),
    "level": ("Level", "级别"),
    "min_level": ("Minimum level", "最低级别"),
    "min_age": ("Older than (minutes)", "超过（分钟）"),
    "state": ("State", "状态"),
    "opened": ("Opened", "开启时间"),
    "age": ("Age", "时长"),
    "reason": ("Reason", "原因"),
    "recipient": ("Recipient", "接收方"),
    "record": ("Record", "记录"),
    "actions": ("Actions", "操作"),
    "resolve": ("Resolve", "结案"),
    "note": ("Add note", "添加备注"),
    "redeliver": ("Redeliver", "重新投递"),
    "notes": ("Notes", "备注"),
    "none": ("None.", "无。"),
    "escalations.showing": ("Showing {state}.", "当前显示：{state}。"),
    "escalations.others": ("Show instead:", "改为显示："),
    "cases.OPEN": ("open cases", "未结案件"),
    "cases.RESOLVED": ("cases resolved by an operator", "操作员已结案件"),
    "cases.CLOSED_BY_ACK": ("cases closed by a late acknowledgement", "因迟到确认而关闭的案件"),
    "cases.": ("cases in every state", "所有状态的案件"),
    "done.resolved": ("Case resolved.", "案件已结案。"),
    "done.noted": ("Note added.", "备注已添加。"),
    "done.redelivered": ("Redelivery requested.", "已请求重新投递。"),
    "refused": ("Refused", "已拒绝"),
    "refused.jurisdiction": (
        "Not found, or outside your jurisdiction. The attempt was recorded in the audit log.",
        "不存在或不在您的管辖范围内。此次尝试已记入审计日志。",
    ),
    "error": ("Could not do that: {why}", "无法完成：{why}"),
    "bad_csrf": ("The form expired; reload the page and try again.", "表单已失效，请刷新后重试。"),
    "record.publisher": ("Publisher", "发布方"),
    "record.declaration": ("Declaration", "报关单号"),
    "record.accepted": ("Accepted", "接收时间"),
    "record.digest": ("Digest", "摘要"),
    "record.schema_version": ("Schema version", "模式版本"),
    "record.timeline": ("Timeline for {agency}", "{agency} 时间线"),
    "record.attempts": ("Attempts", "投递尝试"),
    "record.acks": ("Acknowledgements", "确认回执"),
    "record.audit": ("Audit inclusion", "审计收录"),
    "sig.valid": ("signature valid", "签名有效"),
    "sig.invalid": ("signature INVALID", "签名无效"),
    "sig.unknown_key": ("key unknown", "密钥未知"),
    "inc.signed": ("in signed checkpoint of {size} events", "已收录于 {size} 个事件的签名检查点"),
    "inc.sequenced": ("in the tree, awaiting a checkpoint", "已入树，等待检查点"),
    "inc.pending": ("not yet sequenced", "尚未排序"),
    "time": ("Time", "时间"),
    "kind": ("Kind", "类型"),
    "actor": ("Actor", "执行者"),
    "detail": ("Detail", "详情"),
    "agencies.connector": ("Connector", "连接方式"),
    "agencies.connected": ("Connected", "连接"),
    "agencies.breaker": ("Circuit breaker", "熔断器"),
    "agencies.last_seen": ("Last seen", "最近活动"),
    "agencies.backlog": ("Backlog (open deliveries)", "积压（未办结投递）"),
    "agencies.past_deadline": ("past deadline", "已超期限"),
    "agencies.oldest": ("oldest open for {age}", "最早一件已等待 {age}"),
    "meaning.accepted": ("accepted", "已接受"),
    "meaning.rejected": ("rejected", "已拒绝"),
    "meaning.waiting": ("waiting", "等待中"),
    "meaning.closed": ("closed", "已办结"),
    "closure.waiting_received": ("waiting for RECEIVED", "等待 RECEIVED 回执"),
    "closure.waiting_business": ("waiting for ACCEPTED or REJECTED", "等待 ACCEPTED 或 REJECTED 回执"),
    "closure.closed_by": ("closed by {status} at {time}", "已于 {time} 由 {status} 办结"),
    "agencies.keys": ("Key fingerprints", "密钥指纹"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "never": ("never", "从未"),
    "permits.search": ("Permit number", "证件编号"),
    "permits.search_button": ("Search", "查询"),
    "permits.versions": ("Versions", "版本"),
    "permits.checks": ("Verifications", "核验"),
    "permits.drawdowns": ("Draw-downs", "核销"),
    "permits.not_found": (
        "No permit with that number in your jurisdiction.",
        "您的管辖范围内没有此编号的证件。",
    ),
    "audit.checkpoints": ("Latest signed checkpoints", "最新签名检查点"),
    "audit.tree_size": ("Tree size", "树大小"),
    "audit.root": ("Root hash", "根哈希"),
    "audit.verify": ("Verify the audit log now", "立即校验审计日志"),
    "audit.result": ("Verification result", "校验结果"),
    "audit.events": ("Latest audit events", "最新审计事件"),
    "audit.against": ("checked against a witness", "已对照见证方核验"),
    "audit.witnesses": ("Witnesses (partner agencies cosigning checkpoints)", "见证方（合作机构联署检查点）"),
    "audit.no_witnesses": (
        "No witness is configured: checkpoints carry the hub's own signature only.",
        "未配置见证方：检查点仅有本中心自己的签名。",
    ),
    "witness.name": ("Witness", "见证方"),
    "witness.state": ("State", "状态"),
    "witness.size": ("Cosigned tree size", "已联署树大小"),
    "witness.detail": ("Last answer", "最近答复"),
    "witness.COSIGNED": ("cosigned", "已联署"),
    "witness.REFUSED": ("REFUSED", "拒绝联署"),
    "witness.UNREACHABLE": ("unreachable", "无法连接"),
    "witness.PENDING": ("nothing sent yet", "尚未发送"),
    "language": ("中文", "English"),
}


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` in `lang`; an unknown key shows as itself so a gap is visible, not fatal."""
    index = 1 if lang == "zh" else 0

    def t(key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text

    return t


def choose(cookie: str | None, accept_language: str) -> str:
    if cookie in LANGUAGES:
        return cookie
    return "zh" if accept_language.lower().startswith("zh") else "en"
