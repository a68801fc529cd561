"""The portal's message catalogue, English and 中文; a key it lacks is looked up in the console's."""

from __future__ import annotations

from collections.abc import Callable

from ackhub.hub.console.i18n import MESSAGES as CONSOLE_MESSAGES

# key → (English, 中文)
MESSAGES: dict[str, tuple[str, str]] = {
    "title": ("ackhub enterprise portal", "ackhub 企业门户"),
    "nav.records": ("My records", "我的记录"),
    "nav.cases": ("My cases", "我的案件"),
    "nav.subscriptions": ("Notifications", "变更通知"),
    "nav.verify": ("Check a proof", "核验证明"),
    "signin.help": (
        "Sign in with your enterprise's account, or paste an enterprise token (ackhub token issue --uscc …).",
        "使用企业账户登录，或粘贴企业令牌（ackhub token issue --uscc …）。",
    ),
    "signin.oidc": ("Sign in with your enterprise account", "使用企业账户登录"),
    "signin.token": ("Enterprise token", "企业令牌"),
    "signin.token_button": ("Sign in with the token", "使用令牌登录"),
    "signin.limited": (
        "Too many attempts from your address; wait a minute and try again.",
        "来自您地址的尝试过多，请稍候一分钟再试。",
    ),
    "signin.token_off": ("Sign-in with a token is off on this hub.", "本中心未开放令牌登录。"),
    "signin.oidc_failed": ("Sign-in with your account failed: {why}", "账户登录失败：{why}"),
    "signed_in_as": ("enterprise {uscc}", "企业 {uscc}"),
    "records.declaration": ("Declaration number", "报关单号"),
    "records.from": ("From (date)", "起始日期"),
    "records.to": ("To (date)", "截止日期"),
    "records.search": ("Search", "查询"),
    "records.none": ("No records of yours match.", "没有符合条件的记录。"),
    "records.next": ("Older records →", "更早的记录 →"),
    "records.first": ("← Newest", "← 最新"),
    "records.accepted": ("Received by the hub", "中心接收时间"),
    "records.recipients": ("Sent to", "发送至"),
    "records.bad": ("Please correct: {why}", "请更正：{why}"),
    "record.title": ("Record {id}", "记录 {id}"),
    "record.proof": ("Delivery proof", "送达证明"),
    "record.proof_json": ("Download the proof (JSON)", "下载证明（JSON）"),
    "record.proof_print": ("Printable summary with QR code", "可打印摘要（含二维码）"),
    "record.not_found": ("No record of yours with that id.", "您的记录中没有此编号。"),
    "record.waiting_received": ("waiting for the agency's receipt", "等待该机构签收"),
    "record.waiting_business": ("waiting for the agency's decision", "等待该机构处理结果"),
    "record.done": ("done", "已办结"),
    # the timeline in plain words, by TraceRecord's event kind
    "tl.PUBLISHED": ("{publisher} sent the record to the hub", "{publisher} 将记录发送至中心"),
    "tl.ATTEMPT": ("Sent to {agency}", "已发送至 {agency}"),
    "tl.RECEIVED": (
        "Received by {agency} — its signed receipt is in the proof",
        "{agency} 已签收——签名回执载于证明中",
    ),
    "tl.ACCEPTED": ("Accepted by {agency}", "{agency} 已受理"),
    "tl.REJECTED": ("Rejected by {agency}: {reason}", "{agency} 已退回：{reason}"),
    "tl.ESCALATED": (
        "Handed to the hub's staff to follow up: {reason}",
        "已转交中心工作人员跟进：{reason}",
    ),
    "tl.ESCALATION_STEPPED": ("The case was raised to a higher level", "案件已升级"),
    "tl.ESCALATION_RESOLVED": ("The hub's staff closed the case: {reason}", "中心工作人员已结案：{reason}"),
    "tl.ESCALATION_CLOSED_BY_ACK": (
        "The case closed itself: {agency} answered late",
        "{agency} 迟到答复，案件自动关闭",
    ),
    "tl.REDELIVERY_REQUESTED": ("The hub's staff had it sent again", "中心工作人员已安排重新发送"),
    "tl.DEFERRED": ("{agency} asked the hub to wait before sending again", "{agency} 要求稍后再发送"),
    "tl.ABORTED": ("{agency}'s system refused to take it: {reason}", "{agency} 的系统拒收：{reason}"),
    "tl.CLOSED": ("Nothing more is expected from {agency}", "{agency} 已办结，无需再等待"),
    "tl.CASE_OPENED": ("{actor} opened a case (see Cases below)", "{actor} 开立了案件（见下方案件）"),
    "tl.CASE_MESSAGE": ("{actor} wrote in the case", "{actor} 在案件中留言"),
    "tl.CASE_RESOLVED": ("{actor} resolved the case: {reason}", "{actor} 已结案：{reason}"),
    "tl.CASE_WITHDRAWN": ("{actor} withdrew the case: {reason}", "{actor} 撤回了案件：{reason}"),
    "tl.CASE_REOPENED": ("{actor} reopened the case: {reason}", "{actor} 重新开启了案件：{reason}"),
    "tl.CASE_ESCALATED": (
        "An answer in the case was late; it was raised to the hub's staff",
        "案件答复逾期，已提交中心工作人员",
    ),
    "proof.title": ("Delivery proof", "送达证明"),
    "proof.lead": (
        "This page summarises a delivery proof issued by the hub. The proof file itself (JSON) is the "
        "evidence: check it at the address in the QR code.",
        "本页为中心出具的送达证明摘要。证明文件（JSON）本身即为证据：请在二维码所示地址核验。",
    ),
    "proof.print": ("Print", "打印"),
    "proof.ack": ("{status} at {time}, signed with key {key}", "{time} {status}，签名密钥 {key}"),
    "proof.checkpoint": (
        "Recorded in the hub's audit log {origin} of {size} events, signed at {time}.",
        "已记入中心审计日志 {origin}（{size} 个事件），签名时间 {time}。",
    ),
    "proof.scan": ("Scan to check this proof", "扫码核验此证明"),
    "proof.digest": ("Proof file SHA-256", "证明文件 SHA-256"),
    "verify.title": ("Check a delivery proof", "核验送达证明"),
    "verify.lead": (
        "Anyone can check a delivery proof here, without an account: upload the proof file (JSON) or paste "
        "it. It is checked against this hub's published key{witnesses}.",
        "任何人无需账户即可在此核验送达证明：上传证明文件（JSON）或粘贴其内容。"
        "核验依据本中心公布的密钥{witnesses}。",
    ),
    "verify.witnesses": (
        " and its witnesses' cosignatures ({quorum} of {count} required)",
        "及见证方联署（{count} 个中至少 {quorum} 个）",
    ),
    "verify.file": ("Proof file", "证明文件"),
    "verify.paste": ("…or paste the proof", "……或粘贴证明内容"),
    "verify.button": ("Check", "核验"),
    "verify.ok": (
        "Verified: every signature and proof in the document checks out.",
        "核验通过：文件中的每个签名和证明均有效。",
    ),
    "verify.failed": ("NOT verified: this proof must not be relied on.", "核验未通过：此证明不可采信。"),
    "verify.proven": ("What the proof shows", "证明所示"),
    "verify.problems": ("What failed", "未通过的项目"),
    "verify.empty": ("Choose a file or paste a proof first.", "请先选择文件或粘贴证明内容。"),
    "verify.not_json": (
        "This is not a delivery proof: it is not JSON ({why}).",
        "这不是送达证明：内容不是 JSON（{why}）。",
    ),
    "verify.unreadable": ("The upload could not be read ({why}).", "无法读取上传的内容（{why}）。"),
    "verify.not_object": (
        "This is not a delivery proof: it is not a JSON object.",
        "这不是送达证明：内容不是 JSON 对象。",
    ),
    "verify.too_big": (
        "The file is larger than {n} bytes; a delivery proof is smaller.",
        "文件超过 {n} 字节；送达证明没有这么大。",
    ),
    "verify.expecting": (
        "You are checking record {record} (digest {digest}).",
        "您正在核验记录 {record}（摘要 {digest}）。",
    ),
    "verify.mismatch": (
        "This proof is of another record than the QR code names ({record}).",
        "此证明所涉记录与二维码所示记录（{record}）不同。",
    ),
    "verify.limited": (
        "Too many checks from your address; wait a minute and try again.",
        "来自您地址的核验过多，请稍候一分钟再试。",
    ),
    # the verifier's sentences (ackhub.audit.proofs, in English) said again: ackhub.hub.portal.verdicts
    "vf.checkpoint": (
        "The hub's audit log {origin} held {size} events at {time}, signed by the hub's key {key}{unpinned}.",
        "中心审计日志 {origin} 于 {time} 共有 {size} 个事件，由中心密钥 {key} 签名{unpinned}。",
    ),
    "vf.unpinned": (" (not compared with a pinned hub key)", "（未与固定的中心密钥比对）"),
    "vf.witnesses": (
        "Trusted witnesses cosigned that checkpoint, each having checked it extends every earlier one it saw: "
        "{names}.",
        "受信任的见证方已联署该检查点，且各自核实它延续了其此前见过的每个检查点：{names}。",
    ),
    "vf.published": (
        "{publisher} published record {record} ({type}{declaration}) with digest {digest} at {time}; the hub "
        "logged it as audit event {index}.",
        "{publisher} 于 {time} 发布记录 {record}（{type}{declaration}），摘要 {digest}；"
        "中心将其记为审计事件 {index}。",
    ),
    "vf.declaration": (", declaration {number}", "，报关单号 {number}"),
    "vf.no_ack": (
        "No acknowledgement from {who} ({agency}) is in this proof.",
        "此证明中没有 {who}（{agency}）的回执。",
    ),
    "vf.ack": (
        "{who}'s system ({agency}) {says} record {record} with digest {digest} at {time}{reason}: its signature "
        "verifies with key {key}, registered with the hub at {key_time} (audit event {key_event}); the hub "
        "logged the acknowledgement as audit event {index}.",
        "{who} 的系统（{agency}）于 {time} {says}记录 {record}（摘要 {digest}）{reason}：其签名可用密钥 {key} "
        "验证，该密钥于 {key_time} 在中心登记（审计事件 {key_event}）；中心将此回执记为审计事件 {index}。",
    ),
    "vf.says.RECEIVED": ("acknowledged receipt of", "签收了"),
    "vf.says.ACCEPTED": ("accepted", "受理了"),
    "vf.says.REJECTED": ("rejected", "退回了"),
    "vf.reason": (", giving the reason {reason}", "，理由为 {reason}"),
    "vf.case": (
        "Case {case} ({kind}) about this record was opened by {actor} at {time}; {n} audited change(s) (audit "
        "events {events}), the last: {detail} — state {state}.",
        "关于此记录的案件 {case}（{kind}）由 {actor} 于 {time} 开立；共 {n} 项已审计的变更（审计事件 {events}），"
        "最近一项：{detail}——状态 {state}。",
    ),
    "vf.malformed": ("the document is malformed: {why}", "文件格式有误：{why}"),
    "vf.not_format": ("not a {format} document (format {got})", "不是 {format} 文件（format 为 {got}）"),
    "vf.checkpoint_bad": ("the hub's checkpoint does not verify: {why}", "中心的检查点验证失败：{why}"),
    "vf.note_bad": (
        "the checkpoint's signed note is not of this checkpoint",
        "检查点的签名注记不属于此检查点",
    ),
    "vf.witness_shortfall": ("the checkpoint is {why}", "检查点未满足见证要求：{why}"),
    "vf.inclusion_bad": (
        "audit event {index}: its inclusion proof does not lead to the checkpoint's root",
        "审计事件 {index}：其包含证明不能导出检查点的根哈希",
    ),
    "vf.leaf_bad": (
        "audit event {index}: its data names leaf {leaf}",
        "审计事件 {index}：其数据指向叶子 {leaf}",
    ),
    "vf.unlogged": ("{what}: no verified audit event records it", "{what}：没有经验证的审计事件记录此项"),
    "vf.publication_differs": (
        "publication of record {record}: the document does not match what the hub logged in audit event "
        "{index} ({fields})",
        "记录 {record} 的发布：文件与中心在审计事件 {index} 中记录的内容不符（{fields}）",
    ),
    "vf.event_differs": (
        "{what}: audit event {index} is a {kind} event that does not match ({fields})",
        "{what}：审计事件 {index} 是 {kind} 事件，与文件不符（{fields}）",
    ),
    "vf.key_bad": (
        "{what}: the agency key is not an Ed25519 public key",
        "{what}：机构密钥不是 Ed25519 公钥",
    ),
    "vf.signature_bad": (
        "{what}: the signature does not verify with key {key}",
        "{what}：签名无法用密钥 {key} 验证",
    ),
    "vf.what.publication": ("publication of record {record}", "记录 {record} 的发布"),
    "vf.what.agency": ("registration of agency {agency}", "机构 {agency} 的登记"),
    "vf.what.ack_key": (
        "{agency}'s {status} acknowledgement: registration of key {key}",
        "{agency} 的 {status} 回执：密钥 {key} 的登记",
    ),
    "vf.what.ack": ("{agency}'s {status} acknowledgement", "{agency} 的 {status} 回执"),
    "vf.what.case": ("case {case}", "案件 {case}"),
    "subs.lead": (
        "Hear of changes to your records — received, accepted, rejected, escalated, a case's messages — by "
        "webhook (Standard Webhooks, signed) or by e-mail.",
        "通过 Webhook（Standard Webhooks 签名）或电子邮件，获知您的记录的变化：签收、受理、退回、转交处理、案件消息。",
    ),
    "subs.channel": ("Channel", "方式"),
    "subs.WEBHOOK": ("Webhook (https URL)", "Webhook（https 地址）"),
    "subs.EMAIL": ("E-mail", "电子邮件"),
    "subs.target": ("URL or e-mail address", "地址或电子邮箱"),
    "subs.events": ("Changes", "变化"),
    "subs.events_hint": ("none ticked: every change", "不勾选即全部"),
    "subs.create": ("Subscribe", "订阅"),
    "subs.yours": ("Your subscriptions", "您的订阅"),
    "subs.none": ("No subscriptions yet.", "暂无订阅。"),
    "subs.made": (
        "Subscribed. Verify each webhook with this signing secret (shown now; keep it safe):",
        "订阅成功。请用以下签名密钥验证每个 Webhook（仅此处显示，请妥善保存）：",
    ),
    "subs.made_email": ("Subscribed.", "订阅成功。"),
    "subs.refused": ("Not subscribed: {why}", "未能订阅：{why}"),
    "subs.not_found": ("No subscription of yours with that id.", "您没有此编号的订阅。"),
    "subs.filters": ("For", "范围"),
    "subs.all_records": ("all your records", "您的全部记录"),
    "subs.ACTIVE": ("active", "已启用"),
    "subs.DISABLED": ("disabled", "已停用"),
    "subs.failing_since": ("failing since {time}", "自 {time} 起投递失败"),
    "subs.enable": ("Re-enable", "重新启用"),
    "subs.delete": ("Delete", "删除"),
    "subs.log": ("Delivery log", "投递记录"),
    "subs.log_none": ("Nothing sent yet.", "尚未发送。"),
    "subs.attempt": ("Attempt", "次数"),
    "subs.outcome": ("Outcome", "结果"),
    "done.enable": ("The subscription is active again.", "订阅已重新启用。"),
    "done.delete": ("The subscription was deleted.", "订阅已删除。"),
    "event.RECEIVED": ("received", "已签收"),
    "event.ACCEPTED": ("accepted", "已受理"),
    "event.REJECTED": ("rejected", "已退回"),
    "event.ESCALATED": ("escalated", "已转交处理"),
    "event.CASE_MESSAGE": ("case messages", "案件消息"),
    "field.channel": ("channel", "方式"),
    "field.target": ("address", "地址"),
    "field.record_type": ("record type", "记录类型"),
    "field.declaration_number": ("declaration number", "报关单号"),
    "field.events": ("changes", "变化"),
    "field.text": ("your message", "您的说明"),
    "field.kind": ("kind of case", "案件类型"),
    "field.title": ("title", "标题"),
    "field.reason": ("reason", "原因"),
    "field.state": ("state", "状态"),
    "field.request_id": ("form id (reload the page)", "表单编号（请刷新页面）"),
    "field.page_token": ("page", "页码"),
    "field.case_id": ("case", "案件"),
    "field.record.record_id": ("record", "记录"),
    "field.record.recipient": ("agency concerned", "涉及机构"),
    "field.record.delivery_id": ("agency concerned", "涉及机构"),
    # cases between parties
    "case.section": ("Cases about this record", "关于此记录的案件"),
    "case.none_here": ("No cases about this record.", "此记录暂无案件。"),
    "case.deadline": ("Answer due", "答复期限"),
    "case.last": ("Last activity", "最近动态"),
    "case.open": ("Open a case about this record", "就此记录开立案件"),
    "case.open_help": (
        "When an office says this record never arrived, or you dispute its content or a rejection, open a "
        "case: the hub attaches what it holds (the signed receipts, the attempts, the delivery proof) and "
        "asks the agency concerned to answer before a deadline.",
        "当某机构称未收到此记录，或您对其内容或退回有异议时，可开立案件：中心会附上其掌握的证据"
        "（签名回执、发送记录、送达证明），并要求相关机构在期限内答复。",
    ),
    "case.kind_help.NOT_RECEIVED": ("an agency says it never got the record", "某机构称未收到记录"),
    "case.kind_help.CONTENT_DISPUTE": ("the record's content is disputed", "对记录内容有异议"),
    "case.kind_help.REJECTION_APPEAL": ("you contest an agency's rejection", "对某机构的退回提出申诉"),
    "case.kind_help.OTHER": ("anything else, for customs", "其他事项，由海关处理"),
    "case.about": ("Agency concerned", "涉及机构"),
    "case.whole_record": ("the whole record", "整条记录"),
    "case.title": ("Title", "标题"),
    "case.optional": ("optional", "选填"),
    "case.text": ("What happened", "情况说明"),
    "case.open_button": ("Open the case", "开立案件"),
    "case.required": ("is required", "为必填项"),
    "case.refused": ("The case was not opened: {why}", "案件未开立：{why}"),
    "case.refused_message": ("Your message was not added: {why}", "消息未添加：{why}"),
    "case.refused_withdraw": ("The case was not withdrawn: {why}", "案件未撤回：{why}"),
    "case.refused_reopen": ("The case was not reopened: {why}", "案件未重新开启：{why}"),
    "case.err.CASE_CLOSED": (
        "the case is closed ({state}) and takes no more messages; reopen it first",
        "案件已关闭（{state}），不再接收消息；请先重新开启",
    ),
    "case.err.CASE_NOT_CLOSED": ("the case is still open", "案件仍在处理中"),
    "case.err.REOPEN_WINDOW_PASSED": (
        "it could be reopened until {reopen_until}; that time has passed",
        "重新开启的期限为 {reopen_until}，现已超过",
    ),
    "case.err.NOT_CASE_OPENER": (
        "only the party that opened the case ({opened_by}) or customs may withdraw it",
        "仅开立案件的一方（{opened_by}）或海关可撤回",
    ),
    "case.err.DELIVERY_NOT_REJECTED": (
        "that agency did not reject the record (it is {state}): there is no rejection to appeal",
        "该机构并未退回此记录（当前为 {state}），无可申诉的退回",
    ),
    "case.err.DELIVERY_NOT_FOUND": ("the record was not sent to that agency", "此记录未发送至该机构"),
    "case.err.REQUEST_ID_REUSED": (
        "this form was already used for something else; reload the page and try again",
        "此表单已用于其他操作，请刷新页面后重试",
    ),
    "case.not_found": ("No case of yours with that id.", "您的案件中没有此编号。"),
    "case.list_help": (
        "The cases you are a party to: those you opened, and those others opened about your records.",
        "您作为当事方的案件：您开立的案件，以及他方就您的记录开立的案件。",
    ),
    "case.none": ("No cases match.", "没有符合条件的案件。"),
    "case.next": ("Older cases →", "更早的案件 →"),
    "case.first": ("← Newest", "← 最新"),
    "case.nobody": ("nobody (customs decides)", "无（由海关决定）"),
    "case.party.you": ("you", "您"),
    "case.party.customs": ("customs office {id}", "海关 {id}"),
    "case.party.operator": ("customs officer {id}", "海关工作人员 {id}"),
    "case.party.enterprise": ("enterprise {id}", "企业 {id}"),
    "case.party.system": ("the hub", "中心"),
    "case.role.OPENER": ("opened the case", "开立方"),
    "case.role.ENTERPRISE": ("the record's enterprise", "记录所属企业"),
    "case.role.PUBLISHER": ("sent the record", "发送方"),
    "case.role.RECIPIENT": ("received the record", "接收方"),
    "case.role.ISSUER": ("issued the permit", "发证机构"),
    "case.role.CUSTOMS": ("decides", "裁决方"),
    "case.role.ADDED": ("added later", "后加入"),
    "case.opened": ("Opened", "开立"),
    "case.closed": ("Closed", "关闭"),
    "case.reopen_until": ("can be reopened until {time}", "可于 {time} 前重新开启"),
    "case.no_messages": ("No messages yet.", "暂无消息。"),
    "case.answer": ("Your answer", "您的答复"),
    "case.files": ("Files", "附件"),
    "case.files_hint": (
        "up to {n} files of at most {kib} KiB each ({types})",
        "最多 {n} 个文件，每个不超过 {kib} KiB（{types}）",
    ),
    "case.download": ("download", "下载"),
    "field.attachments": ("files", "附件"),
    "field.attachment": ("file {n}", "第 {n} 个文件"),
    "form.too_big": (
        "This form is too large: at most {n} KiB, its files included.",
        "表单过大：连同附件最多 {n} KiB。",
    ),
    "case.withdraw": ("Withdraw the case", "撤回案件"),
    "case.withdraw_button": ("Withdraw", "撤回"),
    "case.reopen": ("Reopen the case", "重新开启案件"),
    "case.reopen_button": ("Reopen", "重新开启"),
    "case.history": ("What happened (audited)", "案件经过（已审计）"),
    "case.done.opened": (
        "The case is open. The agency concerned is asked to answer.",
        "案件已开立，已要求相关机构答复。",
    ),
    "case.done.message": ("Your message was added.", "您的消息已添加。"),
    "case.done.withdraw": ("The case was withdrawn.", "案件已撤回。"),
    "case.done.reopen": (
        "The case is open again; customs is asked to answer.",
        "案件已重新开启，已要求海关答复。",
    ),
    # the evidence attached at opening, in plain words
    "case.ev.RECEIVED": (
        "{agency} signed its receipt of the record (key {key})",
        "{agency} 已签收记录（签名密钥 {key}）",
    ),
    "case.ev.ACCEPTED": (
        "{agency} signed that it accepted the record (key {key})",
        "{agency} 签名确认已受理记录（密钥 {key}）",
    ),
    "case.ev.REJECTED": (
        "{agency} signed that it rejected the record: {reason} (key {key})",
        "{agency} 签名退回记录：{reason}（密钥 {key}）",
    ),
    "case.ev.other": ("{agency} signed {status} (key {key})", "{agency} 签名 {status}（密钥 {key}）"),
    "case.ev.unsigned": (
        "{agency} has signed no receipt after {n} attempt(s); the last one is shown",
        "已发送 {n} 次，{agency} 仍未签收；所示为最后一次发送时间",
    ),
    "case.ev.unsent": ("The record was not yet sent to {agency}", "记录尚未发送至 {agency}"),
    "case.ev.permit_valid": ("{kind} {number} was verified valid", "{kind} {number} 核验有效"),
    "case.ev.permit_invalid": (
        "{kind} {number} was verified NOT valid: {reasons}",
        "{kind} {number} 核验无效：{reasons}",
    ),
    "case.ev.permit_held": (
        "The hub holds the issuer's registered copy, signed with key {key}",
        "中心存有发证机构登记的副本，签名密钥 {key}",
    ),
    "case.ev.permit_none": ("The hub holds no registered copy of it", "中心未存有其登记副本"),
    "case.ev.permit_problem": ("Checked today: {why}", "今日核查：{why}"),
    "case.ev.proof": (
        "The record's delivery proof as of the opening is attached to the case",
        "开案时记录的送达证明已附于案件",
    ),
    # a case's changes in plain words (history); messages show in the thread
    "case.h.case.opened": ("{actor} opened the case", "{actor} 开立了案件"),
    "case.h.case.resolved": ("{actor} resolved the case", "{actor} 已结案"),
    "case.h.case.withdrawn": ("{actor} withdrew the case", "{actor} 撤回了案件"),
    "case.h.case.reopened": ("{actor} reopened the case", "{actor} 重新开启了案件"),
    "case.h.case.deadline_missed": (
        "The awaited party did not answer in time; the case was raised to the hub's staff",
        "等待方未按期答复，案件已提交中心工作人员",
    ),
    "case.h.case.stepped": ("The case was raised to a higher level", "案件已升级"),
    "case.h.case.party_added": ("{actor} added a party to the case", "{actor} 为案件增加了当事方"),
    "state.any": ("any state", "全部状态"),
    "type.any": ("any type", "全部类型"),
}


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` in `lang`; an unknown key shows as itself so a gap is visible, not fatal."""
    index = 1 if lang == "zh" else 0

    def t(key: str, /, **values: object) -> str:
        pair = MESSAGES.get(key) or CONSOLE_MESSAGES.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text

    return t
