"""Fixed bilingual word lists the dataset draws from: styles, colours, scenes, sizes, sign styles.

Everything here is a tuple of frozen records so that ids are stable across releases: the held-out
split, the evaluation set and cached captions all refer to these ids.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Named:
    """An id with its English and Chinese display names."""

    id: str
    en: str
    zh: str


@dataclass(frozen=True)
class Colour:
    id: str
    en: str
    zh: str
    rgb: tuple[int, int, int]


# Sprite styles. "3D" is Fluent 3D (webp), "emoji" is Noto Color Emoji, "flat" is Twemoji SVG.
STYLES: tuple[Named, ...] = (
    Named("3d", "3D style", "3D风格"),
    Named("emoji", "emoji style", "表情符号风格"),
    Named("flat", "flat style", "扁平风格"),
)

# Twelve colours whose names people actually use in prompts, far enough apart in RGB that a
# nearest-colour check in evaluation can tell them apart.
COLOURS: tuple[Colour, ...] = (
    Colour("white", "white", "白色", (245, 245, 245)),
    Colour("black", "black", "黑色", (20, 20, 20)),
    Colour("gray", "gray", "灰色", (128, 128, 128)),
    Colour("red", "red", "红色", (220, 40, 40)),
    Colour("orange", "orange", "橙色", (245, 140, 30)),
    Colour("yellow", "yellow", "黄色", (250, 220, 50)),
    Colour("green", "green", "绿色", (50, 170, 70)),
    Colour("blue", "blue", "蓝色", (40, 90, 220)),
    Colour("light_blue", "light blue", "浅蓝色", (150, 200, 245)),
    Colour("purple", "purple", "紫色", (140, 60, 190)),
    Colour("pink", "pink", "粉色", (245, 160, 200)),
    Colour("brown", "brown", "棕色", (130, 85, 45)),
)

# Procedural backgrounds (drawn by render.py from these ids).
BACKGROUND_SCENES: tuple[Named, ...] = (
    Named("sky_grass", "blue sky over green grass", "蓝天和草地"),
    Named("sea", "the sea under a blue sky", "蓝天下的大海"),
    Named("night_sky", "a starry night sky", "星空"),
    Named("sunset", "a sunset sky", "夕阳天空"),
    Named("desert", "a desert under a blue sky", "蓝天下的沙漠"),
)

SIZES: tuple[Named, ...] = (
    Named("small", "small", "小"),
    Named("medium", "medium", "中等大小的"),
    Named("large", "large", "大"),
)

POSITIONS: tuple[Named, ...] = (
    Named("left", "on the left", "左边"),
    Named("right", "on the right", "右边"),
    Named("top", "at the top", "上面"),
    Named("bottom", "at the bottom", "下面"),
    Named("center", "in the center", "中间"),
)

SIGN_STYLES: tuple[Named, ...] = (
    Named("neon", "neon sign", "霓虹灯牌"),
    Named("wood", "wooden sign", "木牌"),
    Named("paper", "paper note", "纸条"),
    Named("chalk", "chalkboard", "小黑板"),
)

# Short sign words. Latin: common shop/street words of ≤ 8 letters. Chinese: common 2–4 character
# shop/street words. Order is fixed (held-out combinations index into it by value, not position).
SIGN_WORDS_EN: tuple[str, ...] = (
    "OPEN", "CLOSED", "SALE", "CAFE", "HELLO", "WELCOME", "EXIT", "STOP", "HOTEL", "BAR",
    "PIZZA", "TAXI", "BAKERY", "BOOKS", "FOOD", "COFFEE", "TEA", "BEER", "WINE", "MUSIC",
    "PARK", "BANK", "SHOP", "STORE", "MARKET", "HOME", "LOVE", "PEACE", "JOY", "HOPE",
    "DREAM", "SMILE", "HAPPY", "SUMMER", "WINTER", "SPRING", "AUTUMN", "SUN", "MOON", "STAR",
    "NEWS", "PHONE", "POST", "BUS", "TRAIN", "AIRPORT", "POLICE", "FIRE", "HELP", "INFO",
    "TICKETS", "CINEMA", "MOVIE", "GAME", "PLAY", "SPORT", "GYM", "POOL", "BEACH", "SURF",
    "SUSHI", "RAMEN", "NOODLES", "BURGER", "FRIES", "TACOS", "DONUTS", "CAKE", "CANDY", "ICE",
    "CREAM", "FRESH", "HOT", "COLD", "NEW", "FREE", "DEAL", "GIFT", "GIFTS", "TOYS",
    "FLOWERS", "GARDEN", "FARM", "ZOO", "MUSEUM", "SCHOOL", "LIBRARY", "OFFICE", "LAB", "ART",
    "STUDIO", "SALON", "SPA", "DENTIST", "DOCTOR", "PHARMACY", "GARAGE", "PARKING", "WASH", "LAUNDRY",
    "PETS", "DOGS", "CATS", "FISH", "BIRDS", "KIDS", "FAMILY", "FRIENDS", "PARTY", "DANCE",
    "JAZZ", "ROCK", "BLUES", "DISCO", "KARAOKE", "LIVE", "SHOW", "RADIO", "TV", "VIDEO",
    "BOOK", "READ", "WRITE", "DRAW", "PAINT", "PHOTO", "PRINT", "COPY", "MAIL", "GOLF",
    "NORTH", "SOUTH", "EAST", "WEST", "LEFT", "RIGHT", "UP", "DOWN", "IN", "OUT",
    "YES", "NO", "OK", "WOW", "COOL", "NICE", "GOOD", "BEST", "TOP", "VIP",
    "BAKE", "GRILL", "DINER", "DELI", "JUICE", "MILK", "BREAD", "SOUP", "SALAD", "RICE",
)

SIGN_WORDS_ZH: tuple[str, ...] = (
    "营业", "欢迎", "咖啡", "你好", "出口", "入口", "停车", "禁止", "打折", "特价",
    "新品", "免费", "开业", "休息", "饭店", "酒店", "茶馆", "面馆", "书店", "花店",
    "超市", "药店", "银行", "邮局", "学校", "医院", "公园", "车站", "机场", "地铁",
    "出租车", "公交", "餐厅", "食堂", "烧烤", "火锅", "饺子", "包子", "面条", "米饭",
    "奶茶", "果汁", "啤酒", "白酒", "蛋糕", "面包", "甜品", "冰淇淋", "水果", "蔬菜",
    "鲜花", "春天", "夏天", "秋天", "冬天", "太阳", "月亮", "星星", "大海", "山水",
    "爱", "和平", "快乐", "幸福", "希望", "梦想", "微笑", "朋友", "家庭", "团圆",
    "福", "春节", "中秋", "新年", "元宵", "端午", "恭喜发财", "万事如意", "一路平安", "生日快乐",
    "谢谢", "再见", "请进", "小心", "注意", "安全", "危险", "施工", "安静", "排队",
    "洗手间", "厕所", "电梯", "楼梯", "左转", "右转", "直行", "东", "南", "西",
    "北", "上", "下", "前", "后", "大", "小", "多", "少", "好",
    "音乐", "电影", "游戏", "体育", "健身", "游泳", "跑步", "读书", "写字", "画画",
    "照相", "打印", "复印", "快递", "外卖", "网吧", "网咖", "理发", "美容", "洗衣",
    "宠物", "小猫", "小狗", "金鱼", "熊猫", "老虎", "龙", "凤凰", "花园", "农场",
    "动物园", "博物馆", "图书馆", "办公室", "实验室", "工作室", "会议室", "教室", "宿舍", "厨房",
)
