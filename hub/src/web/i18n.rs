//! Every string the pages show, in English and Chinese, and the choice of language: the
//! `xiji-lang` cookie first, then the browser's `Accept-Language`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap};

/// Name of the cookie that remembers a language picked with the switch link.
pub const LANG_COOKIE: &str = "xiji-lang";

/// A language the pages are available in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The code used in the cookie and the switch link (`en`, `zh`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The value of `<html lang=...>`.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The other language (what the switch link offers).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// Parses a cookie or link value.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The cookie wins; otherwise the most preferred of the browser's languages that is Chinese
    /// or English (`zh*` → Chinese); otherwise English.
    pub fn choose(headers: &HeaderMap) -> Lang {
        if let Some(lang) = crate::api::cookie(headers, LANG_COOKIE).and_then(Lang::from_code) {
            return lang;
        }
        let accept = headers
            .get_all(header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        Lang::from_accept_language(&accept)
    }

    /// Reads an `Accept-Language` value with its `q` weights.
    pub fn from_accept_language(value: &str) -> Lang {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (index, item) in value.split(',').enumerate() {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q <= 0.0 {
                continue;
            }
            // Highest weight wins; the earlier entry wins a tie.
            let better = match best {
                None => true,
                Some((bq, bi, _)) => q > bq || (q == bq && index < bi),
            };
            if better {
                best = Some((q, index, lang));
            }
        }
        best.map_or(Lang::En, |(_, _, lang)| lang)
    }

    /// All messages in this language, by key.
    pub fn messages(self) -> &'static BTreeMap<&'static str, &'static str> {
        static EN: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
        static ZH: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
        let (cell, pick): (_, fn(&Message) -> &'static str) = match self {
            Lang::En => (&EN, |m| m.1),
            Lang::Zh => (&ZH, |m| m.2),
        };
        cell.get_or_init(|| CATALOGUE.iter().map(|m| (m.0, pick(m))).collect())
    }

    /// One message; empty if the key is missing (a test checks every key the code uses).
    pub fn text(self, key: &str) -> &'static str {
        self.messages().get(key).copied().unwrap_or("")
    }
}

/// (key, English, Chinese).
type Message = (&'static str, &'static str, &'static str);

/// The catalogue. Placeholders in braces (`{name}`) are filled in by the template or script.
pub const CATALOGUE: &[Message] = &[
    // Layout.
    ("product", "Xiji", "希冀"),
    ("tagline", "JupyterLab for everyone in your school", "人人可用的 JupyterLab 计算平台"),
    ("nav_home", "Home", "首页"),
    ("nav_token", "Tokens", "令牌"),
    ("nav_admin", "Admin", "管理"),
    ("nav_logout", "Log out", "退出登录"),
    ("nav_login", "Sign in", "登录"),
    ("nav_signed_in_as", "Signed in as", "当前用户"),
    ("lang_other", "中文", "English"),
    ("lang_other_title", "切换到中文", "Switch to English"),
    ("footer", "Xiji · a JupyterHub-compatible compute hub", "希冀 · 兼容 JupyterHub 的计算平台"),
    ("never", "never", "从未"),
    ("working", "Working…", "处理中…"),
    ("error_generic", "Error", "错误"),
    ("dismiss", "Dismiss", "关闭"),
    // Login.
    ("login_title", "Sign in", "登录"),
    ("login_intro", "Sign in to start and open your JupyterLab.", "登录后即可启动并打开你的 JupyterLab。"),
    ("login_username", "Username", "用户名"),
    ("login_password", "Password", "密码"),
    ("login_submit", "Sign in", "登录"),
    ("login_invalid", "Invalid username or password.", "用户名或密码错误。"),
    (
        "login_locked",
        "Too many failed sign-in attempts. Try again in {seconds} seconds.",
        "登录失败次数过多，请在 {seconds} 秒后重试。",
    ),
    (
        "xsrf_failed",
        "This form has expired or was not sent from this site (its _xsrf security token is missing or wrong). Reload the page and try again.",
        "表单已过期或并非来自本站（_xsrf 安全令牌缺失或不匹配）。请刷新页面后重试。",
    ),
    ("xsrf_reload", "Back to the form", "返回表单"),
    // Home.
    ("home_title", "My servers", "我的服务器"),
    ("home_intro", "Your JupyterLab runs on a server of its own. Start it, then open it.", "你的 JupyterLab 运行在专属服务器上：先启动，再打开。"),
    ("home_default_server", "Default server", "默认服务器"),
    ("home_named_title", "Named servers", "命名服务器"),
    (
        "home_named_intro",
        "Run more servers side by side, each with its own name.",
        "可以同时运行多个服务器，每个都有自己的名字。",
    ),
    ("home_named_none", "No named servers yet.", "还没有命名服务器。"),
    ("home_named_placeholder", "e.g. project-1", "例如 project-1"),
    ("home_named_label", "Server name", "服务器名称"),
    ("home_named_add", "Add and start", "添加并启动"),
    (
        "home_named_rules",
        "1–30 lower-case letters, digits, '-', '_' or '.'; start with a letter or digit.",
        "1–30 个小写字母、数字、“-”、“_” 或 “.”，以字母或数字开头。",
    ),
    ("home_named_limit", "At most {n} named servers.", "最多 {n} 个命名服务器。"),
    ("status_running", "Running", "运行中"),
    ("status_pending", "Starting…", "启动中…"),
    ("status_stopping", "Stopping…", "停止中…"),
    ("status_stopped", "Stopped", "已停止"),
    (
        "server_stopping_wait",
        "The server is stopping. Try again in a moment.",
        "服务器正在停止，请稍后重试。",
    ),
    ("btn_start", "Start", "启动"),
    ("btn_stop", "Stop", "停止"),
    ("btn_open", "Open", "打开"),
    ("btn_delete", "Delete", "删除"),
    ("last_activity", "Last activity", "最近活动"),
    ("progress_label", "Start-up progress", "启动进度"),
    ("progress_requested", "Server requested", "已请求启动服务器"),
    ("progress_ready", "Your server is ready.", "你的服务器已就绪。"),
    ("progress_failed", "The server failed to start.", "服务器启动失败。"),
    ("progress_stopped", "The server is stopped.", "服务器已停止。"),
    ("progress_event_log", "Event log", "事件日志"),
    ("confirm_delete_server", "Delete the server {name}?", "确定删除服务器 {name} 吗？"),
    // Spawn pending / not running.
    ("pending_title", "Starting your server", "正在启动服务器"),
    (
        "pending_intro",
        "Your server is starting. This page goes on to it as soon as it is ready.",
        "服务器正在启动，就绪后本页会自动跳转。",
    ),
    ("pending_other_intro", "The server of {user} is starting.", "{user} 的服务器正在启动。"),
    ("btn_home", "Back to home", "返回首页"),
    ("not_running_title", "Server not running", "服务器未运行"),
    (
        "not_running_intro",
        "Your server is not running. Would you like to start it?",
        "你的服务器未在运行。要启动它吗？",
    ),
    (
        "not_running_named",
        "Your server {server} is not running. Would you like to start it?",
        "你的服务器 {server} 未在运行。要启动它吗？",
    ),
    ("not_running_other", "The server of {user} is not running.", "{user} 的服务器未在运行。"),
    (
        "not_running_other_named",
        "The server {server} of {user} is not running.",
        "{user} 的服务器 {server} 未在运行。",
    ),
    ("not_running_start", "Start server", "启动服务器"),
    ("named_servers_disabled", "Named servers are not enabled on this hub.", "本平台未启用命名服务器。"),
    (
        "redirect_loop",
        "Redirect loop detected: the server is running but the proxy does not reach it yet. Try again in a moment.",
        "检测到重定向循环：服务器已运行，但代理暂时无法到达它。请稍后重试。",
    ),
    // Tokens.
    ("token_title", "API tokens", "API 令牌"),
    (
        "token_intro",
        "A token lets a script or another program use the hub's REST API as you. Keep it secret, like a password.",
        "令牌可让脚本或其他程序以你的身份调用平台的 REST API。请像保管密码一样保管它。",
    ),
    ("token_new", "New token", "新建令牌"),
    ("token_note", "Note", "备注"),
    ("token_note_placeholder", "What is it for?", "用途说明"),
    ("token_expires_in", "Expires in", "有效期"),
    ("token_never", "Never", "永不过期"),
    ("token_days", "{n} days", "{n} 天"),
    ("token_scopes", "Scopes (optional)", "权限范围（可选）"),
    (
        "token_scopes_help",
        "Separated by spaces, e.g. read:users:name servers. Empty: all of your permissions.",
        "以空格分隔，例如 read:users:name servers。留空表示拥有你的全部权限。",
    ),
    ("token_create", "Create token", "创建令牌"),
    ("token_created_title", "Your new token", "你的新令牌"),
    (
        "token_created_help",
        "Copy it now: it will not be shown again.",
        "请立即复制：它不会再次显示。",
    ),
    ("btn_copy", "Copy", "复制"),
    ("copied", "Copied", "已复制"),
    ("token_list_title", "Your tokens", "你的令牌"),
    ("token_none", "You have no tokens.", "你还没有令牌。"),
    ("col_note", "Note", "备注"),
    ("col_scopes", "Scopes", "权限范围"),
    ("col_created", "Created", "创建时间"),
    ("col_last_used", "Last used", "最近使用"),
    ("col_expires", "Expires", "过期时间"),
    ("col_actions", "Actions", "操作"),
    ("btn_revoke", "Revoke", "撤销"),
    (
        "confirm_revoke",
        "Revoke this token? Programs using it stop working.",
        "确定撤销此令牌吗？使用它的程序将无法继续工作。",
    ),
    ("all_permissions", "all of your permissions", "全部权限"),
    ("token_oauth", "Signed-in app: {client}", "已授权应用：{client}"),
    // Admin.
    ("admin_title", "Users", "用户管理"),
    ("admin_add_title", "Add users", "添加用户"),
    ("admin_add_names", "User names, one per line", "用户名（每行一个）"),
    ("admin_add_password", "Initial password (optional)", "初始密码（可选）"),
    ("admin_add_role", "Account role", "账号角色"),
    ("admin_add_submit", "Add users", "添加用户"),
    ("admin_added", "Added {n} user(s).", "已添加 {n} 个用户。"),
    ("admin_filter", "Filter by name", "按用户名筛选"),
    ("btn_filter", "Filter", "筛选"),
    ("admin_none", "No users match.", "没有匹配的用户。"),
    ("role_student", "Student", "学生"),
    ("role_teacher", "Teacher", "教师"),
    ("role_admin", "Administrator", "管理员"),
    ("badge_admin", "admin", "管理员"),
    ("badge_you", "you", "你"),
    ("col_user", "User", "用户"),
    ("col_role", "Account role", "账号角色"),
    ("col_server", "Server", "服务器"),
    ("col_last_activity", "Last activity", "最近活动"),
    ("btn_make_admin", "Make admin", "设为管理员"),
    ("btn_unmake_admin", "Remove admin", "取消管理员"),
    ("btn_set_password", "Set password", "设置密码"),
    ("btn_delete_user", "Delete user", "删除用户"),
    (
        "prompt_password",
        "New password for {name} (at least {min} characters):",
        "请输入 {name} 的新密码（至少 {min} 个字符）：",
    ),
    (
        "password_too_short",
        "The password must have at least {min} characters.",
        "密码至少需要 {min} 个字符。",
    ),
    ("password_set", "Password changed.", "密码已修改。"),
    (
        "confirm_delete_user",
        "Delete the user {name}? Their servers are stopped first.",
        "确定删除用户 {name} 吗？其服务器会先被停止。",
    ),
    ("page_prev", "Previous", "上一页"),
    ("page_next", "Next", "下一页"),
    ("page_info", "{from}–{to} of {total}", "第 {from}–{to} 条，共 {total} 条"),
    // Errors.
    ("error_code", "Error {code}", "错误 {code}"),
    ("error_400_title", "Bad request", "请求有误"),
    ("error_400_text", "The request could not be understood.", "无法理解该请求。"),
    ("error_403_title", "Access denied", "无权访问"),
    ("error_403_text", "You do not have permission to see this page.", "你没有权限访问此页面。"),
    ("error_404_title", "Page not found", "页面不存在"),
    ("error_404_text", "There is nothing at this address.", "此地址没有内容。"),
    ("error_429_title", "Too many requests", "请求过于频繁"),
    ("error_429_text", "Wait a moment and try again.", "请稍后重试。"),
    ("error_500_title", "Something went wrong", "出错了"),
    (
        "error_500_text",
        "The hub could not complete the request. Try again later.",
        "平台未能完成该请求，请稍后重试。",
    ),
    ("error_503_title", "Service unavailable", "服务不可用"),
    ("error_503_text", "The server is not available right now.", "服务器暂时不可用。"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_languages_and_keys_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, en, zh) in CATALOGUE {
            assert!(seen.insert(*key), "duplicate key {key}");
            assert!(
                !en.is_empty() && !zh.is_empty(),
                "{key} is missing a translation"
            );
        }
    }

    #[test]
    fn accept_language_picks_the_most_preferred_of_chinese_and_english() {
        assert_eq!(Lang::from_accept_language("zh-CN,zh;q=0.9"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("zh-TW"), Lang::Zh);
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8"),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language("fr-FR,zh;q=0.5,en;q=0.3"),
            Lang::Zh
        );
        assert_eq!(Lang::from_accept_language("de-DE"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0,en;q=0.1"), Lang::En);
    }

    #[test]
    fn the_cookie_overrides_the_browser() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, "zh-CN".parse().unwrap());
        assert_eq!(Lang::choose(&headers), Lang::Zh);
        headers.insert(header::COOKIE, "a=b; xiji-lang=en".parse().unwrap());
        assert_eq!(Lang::choose(&headers), Lang::En);
    }
}
